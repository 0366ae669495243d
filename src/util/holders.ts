/**
 * Holders by identity: processes (in any mount namespace, through any bind mount) and NFSv4
 * clients of the kernel NFS server that hold an inode of a tree, matched by (device, inode)
 * rather than by path.
 *
 * - /proc/PID/cwd, /proc/PID/root and /proc/PID/fd/N reach the object itself whatever mount
 *   namespace the process lives in; its (device, inode) is read without touching its filesystem
 *   (see holdersOf) and looked up in an index.
 * - /proc/PID/maps gives device (major:minor, hex) and inode of every file mapping.
 * - /proc/fs/nfsd/clients/ID/states lists the NFSv4 server's open, lock, delegation and layout
 *   state, each with `superblock: "MAJ:MIN:INO"` (fs/nfsd/nfs4state.c, nfs4_show_superblock:
 *   `seq_printf(s, "superblock: \"%02x:%02x:%ld\"", MAJOR(sb->s_dev), MINOR(sb->s_dev), i_ino)`;
 *   newer kernels print the inode with %llu, the same digits).
 * - /proc/PID/mountinfo, once per mount namespace: a mount whose root (field 4, the path inside its
 *   filesystem, which follows renames) is the tree's top or inside it writes into the tree with no
 *   descriptor held (a bind mount in a container). Only for a tree given as a `HeldTree`.
 * - /proc/PID/fdinfo of an AF_UNIX socket: `scm_fds: N`, descriptors sent to it (SCM_RIGHTS) and
 *   not yet received (Linux 5.14 and later). Which files they are, Linux does not show: counted
 *   for a `HeldTree` when the socket's process runs as the tree's owner.
 */
import { fstatSync } from 'node:fs';
import { open, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { InodeIndex } from './inodes.js';
import { Limiter } from './limit.js';
import { run } from '../core/exec.js';
import { unescapeMountPath } from './proc.js';

// ---------------------------------------------------------------------------------------------
// Devices

/** The stat device number of a major and minor (glibc's gnu_dev_makedev). */
export function makeDev(major: number, minor: number): number {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return Number(((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn));
}

// ---------------------------------------------------------------------------------------------
// Parsers

export interface MappedFile {
  dev: number;
  ino: number;
  path: string;
}

/** File mappings of a /proc/PID/maps text (anonymous mappings, inode 0, left out). */
export function parseMaps(text: string): MappedFile[] {
  const out: MappedFile[] = [];
  const re = /^\S+\s+\S+\s+\S+\s+([0-9a-fA-F]+):([0-9a-fA-F]+)\s+(\d+)(?:[ \t]+(.*))?$/gm;
  for (const m of text.matchAll(re)) {
    const ino = Number(m[3]);
    if (ino === 0) continue;
    out.push({ dev: makeDev(parseInt(m[1]!, 16), parseInt(m[2]!, 16)), ino, path: m[4] ?? '' });
  }
  return out;
}

export interface NfsdState {
  /** open, lock, deleg, layout */
  type: string;
  dev: number;
  ino: number;
  /** As the server printed it (for messages). */
  filename: string;
}

/** The state lines of /proc/fs/nfsd/clients/ID/states. */
export function parseNfsdStates(text: string): NfsdState[] {
  const out: NfsdState[] = [];
  for (const line of text.split('\n')) {
    const sb = /superblock: "([0-9a-fA-F]+):([0-9a-fA-F]+):(\d+)"/.exec(line);
    if (!sb) continue;
    const type = /type: (\w+)/.exec(line)?.[1] ?? 'unknown';
    const filename = /filename: "(.*?)"(?:, \w+:| })/.exec(line)?.[1] ?? '';
    out.push({ type, dev: makeDev(parseInt(sb[1]!, 16), parseInt(sb[2]!, 16)), ino: Number(sb[3]), filename });
  }
  return out;
}

/** The `address:` of /proc/fs/nfsd/clients/ID/info. */
export function parseNfsdClientAddress(text: string): string | undefined {
  return /^address:\s*"?([^"\n]*)"?/m.exec(text)?.[1];
}

// ---------------------------------------------------------------------------------------------
// Holders

export interface Holder {
  /** 0 for the kernel NFS server. */
  pid: number;
  command: string;
  how: 'cwd' | 'root' | 'fd' | 'map' | 'nfsd' | 'mount' | 'inflight' | 'namespace';
  /** The held object is a directory (a working directory, an open directory). */
  isDirectory: boolean;
  /** As the holder sees it (its own mount namespace), for messages; for a mount, its mount point. */
  path: string;
  /** How many descriptors are in flight (how: inflight). */
  inflight?: number;
}

export interface HoldersOptions {
  /** Default /proc (tests use a fake tree). */
  procRoot?: string;
  /** Default /proc/fs/nfsd. */
  nfsdRoot?: string;
  /** Stop after this many holders (default: all). */
  limit?: number;
  /** stat calls in flight (default 32). */
  concurrency?: number;
  /** Trees whose mounts and whose owner's descriptors in flight count too (see treeOf). */
  trees?: readonly HeldTree[];
}

type Indexes = InodeIndex | readonly InodeIndex[];

function listOf(index: Indexes): readonly InodeIndex[] {
  return Array.isArray(index) ? (index as readonly InodeIndex[]) : [index as InodeIndex];
}

function matcher(index: Indexes): (dev: number, ino: number) => boolean {
  const list = listOf(index);
  return (dev, ino) => list.some((i) => i.has(dev, ino));
}

/** A line of mountinfo. */
export interface MountRecord {
  id: number;
  dev: number;
  /** The mount's root: the path inside its filesystem (field 4; it follows renames). */
  root: string;
  /** Where it is mounted in its namespace (field 5). */
  mountpoint: string;
  readOnly: boolean;
}

/** The mounts of a mountinfo text, paths unescaped. */
export function parseMounts(text: string): MountRecord[] {
  const out: MountRecord[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dev = /^(\d+):(\d+)$/.exec(f[2] ?? '');
    if (!dev || f[3] === undefined || f[4] === undefined) continue;
    const readOnly = (f[5] ?? '').split(',').includes('ro');
    out.push({
      id: Number(f[0]),
      dev: makeDev(Number(dev[1]), Number(dev[2])),
      root: unescapeMountPath(f[3]),
      mountpoint: unescapeMountPath(f[4]),
      readOnly,
    });
  }
  return out;
}

/** mount id -> device, from a mountinfo text. */
export function parseMountinfo(text: string): Map<number, number> {
  return new Map(parseMounts(text).map((m) => [m.id, m.dev]));
}

/**
 * A tree whose mounts (in any mount namespace) and whose owner's descriptors in flight count as
 * holders, besides the inodes of its index (see treeOf).
 */
export interface HeldTree {
  dev: number;
  /** Its top's path inside its filesystem, as field 4 of mountinfo shows a mount of it. */
  path: string;
  /** Its top's owner. */
  uid: number;
}

/**
 * A mount writes into the tree when its root is the tree's top or inside it. A mount of a
 * directory above it reaches the tree only by path, through whatever lies between; the callers
 * keep the tree in a root-only directory, which no user can pass (docs/guarantees.md).
 */
export function mountsInto(m: MountRecord, tree: HeldTree): boolean {
  if (m.dev !== tree.dev || m.root.endsWith('//deleted')) return false;
  return tree.path === '/' || m.root === tree.path || m.root.startsWith(`${tree.path}/`);
}

/**
 * The tree whose top directory is open as `fd` in this process: its path inside its filesystem
 * comes from the kernel (the descriptor's path and our mount of it), so it follows renames.
 * Undefined when the directory was removed or is on no mount of ours.
 */
export async function treeOf(fd: number): Promise<HeldTree | undefined> {
  const st = fstatSync(fd);
  if (st.nlink === 0) return undefined;
  const [info, link, mounts] = await Promise.all([
    readFile(`/proc/self/fdinfo/${fd}`, 'utf8'),
    readlink(`/proc/self/fd/${fd}`),
    readFile('/proc/self/mountinfo', 'utf8'),
  ]);
  const { mntId } = parseFdinfo(info);
  const m = parseMounts(mounts).find((x) => x.id === mntId);
  if (m === undefined) return undefined;
  const rel =
    m.mountpoint === '/'
      ? link
      : link === m.mountpoint
        ? ''
        : link.startsWith(`${m.mountpoint}/`)
          ? link.slice(m.mountpoint.length)
          : undefined;
  if (rel === undefined) return undefined;
  const path = m.root === '/' ? rel || '/' : `${m.root}${rel}`;
  return { dev: m.dev, path, uid: st.uid };
}

/**
 * `mnt_id` and `ino` of a /proc/PID/fdinfo/N text (ino: Linux 5.14 and later), and for an AF_UNIX
 * socket `scm_fds`, the descriptors in its receive queue (Linux 5.14 and later).
 */
export function parseFdinfo(text: string): { mntId?: number; ino?: number; scmFds?: number } {
  const mnt = /^mnt_id:\s*(\d+)/m.exec(text);
  const ino = /^ino:\s*(\d+)/m.exec(text);
  const scm = /^scm_fds:\s*(\d+)/m.exec(text);
  return { mntId: mnt ? Number(mnt[1]) : undefined, ino: ino ? Number(ino[1]) : undefined, ...(scm ? { scmFds: Number(scm[1]) } : {}) };
}

const O_PATH = 0o10000000;

/**
 * Every process (but this one) whose working directory, root, open files or mappings, and every
 * NFSv4 client whose open state, is an inode in `index`; for each of `opts.trees`, every mount of
 * it in any mount namespace, and every process of its owner with descriptors in flight on a socket.
 * Processes and files we cannot read are passed over (they are gone, or beyond what root can see).
 *
 * No file outside the index is ever stat-ed, so a hung network or FUSE filesystem elsewhere cannot
 * stall the scan: an open file's mount and inode come from /proc/PID/fdinfo/N, its device from
 * the process's own mountinfo (which lists the mounts of its mount namespace, read once per
 * namespace); a working directory or root is opened with O_PATH through its magic link (no
 * filesystem call) and read the same way through our own fdinfo (on NFS the open may still
 * revalidate the dentry). Only matches are stat-ed (to tell directories), and a descriptor on a
 * mount its namespace no longer lists (unmounted lazily, or detached) whose inode number the index
 * holds; without `ino:` in fdinfo (Linux before 5.14) or without a readable mountinfo, and for a
 * working directory on a mount its namespace no longer lists, it falls back to stat.
 */
export async function holdersOf(index: Indexes, opts?: HoldersOptions): Promise<Holder[]> {
  const own = opts?.procRoot !== undefined || opts?.nfsdRoot !== undefined || opts?.concurrency !== undefined;
  const trees = opts?.trees ?? [];
  const hits = own ? await scanHolders(index, opts?.limit ?? Infinity, opts) : await sharedScan(index, trees);
  const held = matcher(index);
  return hits
    .filter((h) => (h.tree === undefined ? held(h.dev, h.ino) : trees.includes(h.tree)))
    .slice(0, opts?.limit ?? Infinity)
    .map(({ dev: _dev, ino: _ino, tree: _tree, ...holder }) => holder);
}

/** A holder and the inode (or the tree) it holds. */
type Hit = Holder & { dev: number; ino: number; tree?: HeldTree };

/** Scans waiting for the next pass over /proc (see sharedScan). */
const sharedScans: { waiting: { index: Indexes; trees: readonly HeldTree[]; answer: (hits: Promise<Hit[]>) => void }[]; busy: boolean } = {
  waiting: [],
  busy: false,
};

/**
 * A scan of /proc for `index`, shared with every other scan asked for while one is under way: the
 * next pass, started after all of them were asked (so each answer is as fresh as its own scan
 * would be), looks for the inodes of all their indexes at once, and each keeps its own hits. The
 * jobs of a burst end their quiet periods together; 40 scans of /proc at once took seconds, one
 * pass for all of them takes about what one scan does.
 */
function sharedScan(index: Indexes, trees: readonly HeldTree[]): Promise<Hit[]> {
  const answered = new Promise<Promise<Hit[]>>((answer) => sharedScans.waiting.push({ index, trees, answer }));
  if (!sharedScans.busy) void nextSharedScan();
  return answered.then((hits) => hits);
}

async function nextSharedScan(): Promise<void> {
  if (sharedScans.busy) return;
  const batch = sharedScans.waiting.splice(0);
  if (batch.length === 0) return;
  sharedScans.busy = true;
  try {
    const all = batch.flatMap(({ index }) => listOf(index));
    const hits = scanHolders(all, Infinity, { trees: batch.flatMap(({ trees }) => trees) });
    hits.catch(() => undefined);
    for (const { answer } of batch) answer(hits);
    await hits.catch(() => undefined);
  } finally {
    sharedScans.busy = false;
    void nextSharedScan();
  }
}

/** A mount namespace, as first met through one of its processes. */
interface Namespace {
  pid: string;
  base: string;
  /** mount id -> device */
  devices: Map<number, number>;
  mounts: MountRecord[];
}

type FdInfo = ReturnType<typeof parseFdinfo>;

async function scanHolders(index: Indexes, limit: number, opts?: HoldersOptions): Promise<Hit[]> {
  const procRoot = opts?.procRoot ?? '/proc';
  const nfsdRoot = opts?.nfsdRoot ?? `${procRoot}/fs/nfsd`;
  const scan = new HolderScan(index, opts?.trees ?? [], Math.max(1, opts?.concurrency ?? 32), await offOurMounts(index));
  const found: Hit[] = [];
  let pids: string[] = [];
  try {
    pids = (await readdir(procRoot)).filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid);
  } catch {
    // no /proc: nothing to see
  }
  await new Limiter(8).forEach(pids, async (p) => {
    if (found.length >= limit) return;
    found.push(...(await scan.process(p, `${procRoot}/${p}`)));
  });
  found.push(...(await scan.namespaceHits()));
  found.push(...(await nfsdHits(nfsdRoot, scan.held)));
  return found.slice(0, limit);
}

/**
 * fdinfo and mountinfo give the superblock's device; stat gives st_dev. They agree on ZFS, ext4,
 * xfs, tmpfs and FUSE, not on btrfs subvolumes or overlayfs: if an indexed device is on no mount
 * of ours, match by stat instead.
 */
async function offOurMounts(index: Indexes): Promise<boolean> {
  const ourDevices = new Set(parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')).values());
  return listOf(index).some((i) => !ourDevices.has(i.dev));
}

async function isDir(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}

/** The fdinfo of what a magic link leads to, opened O_PATH (no filesystem call). */
async function viaOpath(link: string): Promise<FdInfo> {
  try {
    const h = await open(link, O_PATH);
    try {
      return parseFdinfo(await readFile(`/proc/self/fdinfo/${h.fd}`, 'utf8'));
    } finally {
      await h.close();
    }
  } catch {
    return {};
  }
}

/** One scan of /proc: what it looks for, the mount namespaces it met, those kept without a process. */
class HolderScan {
  readonly held: (dev: number, ino: number) => boolean;
  private readonly limiter: Limiter;
  private readonly namespaces = new Map<string, Promise<Namespace>>();
  /** Mount namespaces kept by a descriptor or an nsfs mount: the first process that keeps each. */
  private readonly keptNamespaces: { pid: string; base: string; ns: string }[] = [];

  constructor(
    private readonly index: Indexes,
    private readonly trees: readonly HeldTree[],
    concurrency: number,
    /** Match by stat only (see offOurMounts). */
    private readonly statOnly: boolean,
  ) {
    this.held = matcher(index);
    this.limiter = new Limiter(concurrency);
  }

  private heldInode(ino: number): boolean {
    return listOf(this.index).some((i) => i.hasInode(ino));
  }

  /** The process's mount namespace, its mountinfo read once per namespace. */
  private async namespaceOf(pid: string, base: string): Promise<Namespace> {
    const ns = await readlink(`${base}/ns/mnt`).catch(() => `pid:${base}`);
    let n = this.namespaces.get(ns);
    if (n === undefined) {
      n = readFile(`${base}/mountinfo`, 'utf8').then(
        (text) => {
          const mounts = parseMounts(text);
          return { pid, base, mounts, devices: new Map(mounts.map((m) => [m.id, m.dev])) };
        },
        () => ({ pid, base, mounts: [], devices: new Map<number, number>() }),
      );
      this.namespaces.set(ns, n);
    }
    // Named after its first process (the lowest pid), the same in every scan.
    const found = await n;
    if (Number(pid) < Number(found.pid)) Object.assign(found, { pid, base });
    return found;
  }

  /** Whether the object behind a magic link is held: mount and inode from fdinfo, else stat. */
  private check(
    info: FdInfo,
    link: string,
    devices: Map<number, number>,
    unknownMount: 'skip' | 'stat',
  ): Promise<{ dir: boolean; dev: number; ino: number } | undefined> {
    return this.limiter.run(async () => {
      const { mntId, ino } = this.statOnly ? ({} as FdInfo) : info;
      const dev = mntId === undefined ? undefined : devices.get(mntId);
      if (dev !== undefined && ino !== undefined) return this.held(dev, ino) ? { dir: await isDir(link), dev, ino } : undefined;
      // An fd on no mount of its namespace is a pipe, socket or anonymous inode, or a file on a
      // mount unmounted lazily or detached (a hung NFS mount, often): looked at only if its inode
      // number could be ours, and then by a child process that is not waited for long.
      if (devices.size > 0 && mntId !== undefined && ino !== undefined && unknownMount === 'skip') {
        if (!this.heldInode(ino)) return undefined;
        const st = await statApart(link);
        return st !== undefined && this.held(st.dev, st.ino) ? st : undefined;
      }
      try {
        const st = await stat(link);
        return this.held(st.dev, st.ino) ? { dir: st.isDirectory(), dev: st.dev, ino: st.ino } : undefined;
      } catch {
        return undefined;
      }
    });
  }

  /** The holds of one process (`base`: /proc/PID). */
  async process(pidText: string, base: string): Promise<Hit[]> {
    const { devices } = await this.namespaceOf(pidText, base);
    const hits: Omit<Hit, 'pid' | 'command'>[] = [];
    for (const how of ['cwd', 'root'] as const) {
      const link = `${base}/${how}`;
      const h = await this.check(this.statOnly ? {} : await viaOpath(link), link, devices, 'stat');
      if (h) hits.push({ how, isDirectory: h.dir, dev: h.dev, ino: h.ino, path: await readlink(link).catch(() => '?') });
    }
    const inflight = await this.fdHits(pidText, base, devices, hits);
    if (inflight > 0) hits.push(...(await inflightHits(base, inflight, this.trees)));
    const maps = await readFile(`${base}/maps`, 'utf8').catch(() => '');
    const seen = new Set<string>();
    for (const m of parseMaps(maps)) {
      const key = `${m.dev}:${m.ino}`;
      if (seen.has(key) || !this.held(m.dev, m.ino)) continue;
      seen.add(key);
      hits.push({ how: 'map', isDirectory: false, dev: m.dev, ino: m.ino, path: m.path });
    }
    return named(pidText, base, hits);
  }

  /** Adds the held descriptors of a process to `hits`; returns its descriptors in flight. */
  private async fdHits(pidText: string, base: string, devices: Map<number, number>, hits: Omit<Hit, 'pid' | 'command'>[]): Promise<number> {
    const fds = await readdir(`${base}/fd`).catch(() => [] as string[]);
    let inflight = 0;
    await Promise.all(
      fds.map(async (fd) => {
        const link = `${base}/fd/${fd}`;
        const info = await readFile(`${base}/fdinfo/${fd}`, 'utf8').then(parseFdinfo, () => ({}) as FdInfo);
        inflight += info.scmFds ?? 0;
        // A descriptor of a namespace (nsfs inodes start at 0xf0000000): a mount namespace kept.
        if (this.trees.length > 0 && (info.ino ?? 0) >= NS_MIN_INO && !devices.has(info.mntId ?? -1)) {
          const ns = await readlink(link).catch(() => '');
          if (MNT_NS.test(ns)) this.keptNamespaces.push({ pid: pidText, base, ns });
        }
        const h = await this.check(info, link, devices, 'skip');
        if (h) hits.push({ how: 'fd', isDirectory: h.dir, dev: h.dev, ino: h.ino, path: await readlink(link).catch(() => `fd ${fd}`) });
      }),
    );
    return inflight;
  }

  /** After every process: the mounts into the trees in each namespace met, and the namespaces kept without a process. */
  async namespaceHits(): Promise<Hit[]> {
    const found: Hit[] = [];
    for (const ns of await Promise.all(this.namespaces.values())) {
      found.push(...(await mountHits(ns, this.trees)));
      for (const m of ns.mounts) if (MNT_NS.test(m.root)) this.keptNamespaces.push({ pid: ns.pid, base: ns.base, ns: m.root });
    }
    found.push(...(await keptHits(this.keptNamespaces, new Set(this.namespaces.keys()), this.trees)));
    return found;
  }
}

/** stat(1) of a path in a child process, given up after 2 s (a hung filesystem is not ours). */
async function statApart(path: string): Promise<{ dir: boolean; dev: number; ino: number } | undefined> {
  const r = await run('stat', ['-L', '--format=%d %i %f', '--', path], { timeoutMs: 2000 }).catch(() => undefined);
  const f = /^(\d+) (\d+) ([0-9a-f]+)$/.exec(r?.stdout.trim() ?? '');
  return f ? { dev: Number(f[1]), ino: Number(f[2]), dir: (parseInt(f[3]!, 16) & 0o170000) === 0o040000 } : undefined;
}

/** The hits of a process, with its pid and command. */
async function named(pidText: string, base: string, hits: readonly Omit<Hit, 'pid' | 'command'>[]): Promise<Hit[]> {
  if (hits.length === 0) return [];
  const command = (await readFile(`${base}/comm`, 'utf8').catch(() => '?')).trim();
  return hits.map((h) => ({ pid: Number(pidText), command, ...h }));
}

/**
 * The mounts of a namespace that write into one of `trees`. A read-only mount counts too unless
 * the namespace's process is in our user namespace: a user who made one in a namespace of their
 * own can make it writable again.
 */
async function mountHits(ns: Namespace, trees: readonly HeldTree[]): Promise<Hit[]> {
  const hits: Omit<Hit, 'pid' | 'command'>[] = [];
  let ourUsers: Promise<boolean> | undefined;
  const sameUsers = (): Promise<boolean> =>
    (ourUsers ??= Promise.all([readlink(`${ns.base}/ns/user`), readlink('/proc/self/ns/user')]).then(
      ([a, b]) => a === b,
      () => false,
    ));
  for (const tree of trees) {
    for (const m of ns.mounts) {
      if (!mountsInto(m, tree) || (m.readOnly && (await sameUsers()))) continue;
      hits.push({ how: 'mount', isDirectory: true, dev: tree.dev, ino: 0, path: m.mountpoint, tree });
    }
  }
  return named(ns.pid, ns.base, hits);
}

const NS_MIN_INO = 0xf0000000;
const MNT_NS = /^mnt:\[\d+\]$/;

/** The trees (of `trees`) owned by one of the process's uids (root's are never counted). */
async function ownedBy(base: string, trees: readonly HeldTree[]): Promise<HeldTree[]> {
  if (trees.length === 0) return [];
  const status = await readFile(`${base}/status`, 'utf8').catch(() => '');
  const uids = (/^Uid:\s*(.*)$/m.exec(status)?.[1] ?? '').split(/\s+/).filter(Boolean).map(Number);
  return trees.filter((t) => t.uid !== 0 && uids.includes(t.uid));
}

/** The process's descriptors in flight count for the trees of its owner. */
async function inflightHits(base: string, count: number, trees: readonly HeldTree[]): Promise<Omit<Hit, 'pid' | 'command'>[]> {
  return (await ownedBy(base, trees)).map((tree) => ({
    how: 'inflight' as const,
    isDirectory: false,
    dev: tree.dev,
    ino: 0,
    path: 'a socket',
    inflight: count,
    tree,
  }));
}

/**
 * A mount namespace no process is in, kept alive by a descriptor or an nsfs mount of it: its
 * mountinfo cannot be read, so it counts for the trees of the owner of the process that keeps it.
 */
async function keptHits(
  kept: readonly { pid: string; base: string; ns: string }[],
  seen: ReadonlySet<string>,
  trees: readonly HeldTree[],
): Promise<Hit[]> {
  const found: Hit[] = [];
  const done = new Set(seen);
  for (const k of kept) {
    if (done.has(k.ns)) continue;
    done.add(k.ns);
    const hits = (await ownedBy(k.base, trees)).map((tree) => ({
      how: 'namespace' as const,
      isDirectory: false,
      dev: tree.dev,
      ino: 0,
      path: k.ns,
      tree,
    }));
    found.push(...(await named(k.pid, k.base, hits)));
  }
  return found;
}

/** The NFSv4 server's open state on held inodes. */
async function nfsdHits(nfsdRoot: string, held: (dev: number, ino: number) => boolean): Promise<Hit[]> {
  const found: Hit[] = [];
  const clients = await readdir(`${nfsdRoot}/clients`).catch(() => [] as string[]);
  for (const client of clients) {
    const states = await readFile(`${nfsdRoot}/clients/${client}/states`, 'utf8').catch(() => '');
    const mine = parseNfsdStates(states).filter((s) => held(s.dev, s.ino));
    if (mine.length === 0) continue;
    const address =
      parseNfsdClientAddress(await readFile(`${nfsdRoot}/clients/${client}/info`, 'utf8').catch(() => '')) ?? `client ${client}`;
    for (const s of mine)
      found.push({
        pid: 0,
        command: `nfsd (NFSv4 client ${address}, ${s.type})`,
        how: 'nfsd',
        isDirectory: false,
        dev: s.dev,
        ino: s.ino,
        path: s.filename,
      });
  }
  return found;
}

/** What a holder holds, for messages. */
function what(h: Holder): string {
  if (h.how === 'mount') return `a mount of it at ${h.path} in its mount namespace`;
  if (h.how === 'inflight') return `${h.inflight ?? 0} descriptor(s) in flight on ${h.path}, which Linux does not name`;
  if (h.how === 'namespace') return `keeps ${h.path}, a mount namespace no process is in, whose mounts cannot be read`;
  return `${h.how} ${h.path}`;
}

/** One line: `cmd[pid] (cwd /x), nfsd (NFSv4 client 10.0.0.2, open) (nfsd f)`, one item per holder process. */
export function describeHolders(holders: readonly Holder[]): string {
  const byKey = new Map<string, Holder>();
  for (const h of holders) {
    const key = h.pid === 0 ? `nfsd:${h.command}` : String(h.pid);
    if (!byKey.has(key)) byKey.set(key, h);
  }
  return [...byKey.values()].map((h) => (h.pid === 0 ? `${h.command} (${h.path})` : `${h.command}[${h.pid}] (${what(h)})`)).join(', ');
}
