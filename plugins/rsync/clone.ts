/**
 * Copy by block cloning: on a pool where OpenZFS block cloning is active, a regular file copied
 * with copy_file_range (what Node's fs.copyFile uses) shares its blocks with the original
 * instead of writing them again, across datasets of the same pool. FICLONE (`cp
 * --reflink=always`) does not work across datasets on Linux 6.1, copy_file_range does; rsync
 * uses neither.
 *
 * `cloneTree` clones the regular files of a tree (making the directories they need, and hard
 * links as hard links) and stamps each clone with the modification time the original had
 * *before* its data was read (to the microsecond: all that utimes() in Node can set). The caller then runs rsync -aHAX as usual: it finds every cloned
 * file with the same size and modification time and sends no data for it, and it does what it
 * always did for directories, owners, modes, xattrs, ACLs, symlinks and special files; every
 * verification stays as it was. A file that changed after it was cloned has a newer time, so
 * rsync copies it again.
 *
 * The tree read belongs to a user who may change it while it is read, and the tool runs as
 * root: the walk goes by descriptor only (src/util/safefs/dirs.ts walkDirs: every directory opened
 * through its parent's descriptor with O_DIRECTORY|O_NOFOLLOW and checked to be the inode its
 * listing showed), every file is opened through its directory's descriptor with
 * O_NOFOLLOW|O_NOCTTY|O_NONBLOCK and checked (fstat) to be the regular file listed, and the data
 * is copied from that descriptor (/proc/self/fd/N). Whatever is swapped in meanwhile (a symlink,
 * a FIFO, another file) is left to rsync and the seal pass, which deal with it as they always did.
 *
 * parallel-copy.ts is the rsync plugin's use of it: the copy's first stage on every pool (cloned,
 * copied in the kernel, or read and written with `blockCloning: off`), before the bulk rsync.
 *
 * `probeBlockCloning` says once per root whether cloning really happens there: zfs-fuse and
 * OpenZFS before 2.2 do not know the feature, it may be disabled (feature or module
 * parameter), and even where it is enabled only a real clone proves that blocks are shared.
 */
import { randomBytes } from 'node:crypto';
import { constants, type BigIntStats } from 'node:fs';
import { copyFile, link, mkdir, open, readdir, rm, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import {
  CommandError,
  HELPER_PREFIX,
  Limiter,
  NotADirectoryError,
  at,
  isErrno,
  openChild,
  openDir,
  relToBuffer,
  run,
  walkDirs,
  type DirRef,
  type EntryInfo,
} from '../../src/index.js';

export interface BlockCloningProbe {
  /** Whether a copy between the two directories shares blocks. */
  readonly clones: boolean;
  /** Why (one line, for the log). */
  readonly reason: string;
  /** `feature@block_cloning` of the pool, when zpool knows it. */
  readonly feature?: string;
  /** The pool's bclonesaved before and after the probe clone, in bytes. */
  readonly savedBefore?: number;
  readonly savedAfter?: number;
}

export interface ProbeOptions {
  /** The pool both directories are on. */
  readonly pool: string;
  /** A directory on one dataset (the root's directory). */
  readonly sourceDir: string;
  /** A directory on another dataset of the same pool (the staging dataset's mountpoint). */
  readonly targetDir: string;
  /** The zpool command. */
  readonly zpool?: string;
  /** Bytes in the probe file (default 1 MiB: eight 128 KiB records). */
  readonly probeBytes?: number;
  readonly signal?: AbortSignal;
}

const PARAMETER = '/sys/module/zfs/parameters/zfs_bclone_enabled';

async function poolProperties(
  zpool: string,
  pool: string,
  properties: readonly string[],
  signal?: AbortSignal,
): Promise<Map<string, string>> {
  const { stdout } = await run(zpool, ['get', '-Hp', '-o', 'property,value', properties.join(','), pool], signal ? { signal } : {});
  const values = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const [property, value] = line.split('\t');
    if (property && value !== undefined) values.set(property, value);
  }
  return values;
}

async function bclonesaved(zpool: string, pool: string, signal?: AbortSignal): Promise<number> {
  await run(zpool, ['sync', pool], signal ? { signal } : {});
  const value = (await poolProperties(zpool, pool, ['bclonesaved'], signal)).get('bclonesaved');
  const n = Number(value);
  if (value === undefined || !Number.isSafeInteger(n))
    throw new Error(`zpool get bclonesaved ${pool}: unexpected value ${JSON.stringify(value)}`);
  return n;
}

export type BlockCloningSupport =
  { readonly possible: true; readonly feature: string } | { readonly possible: false; readonly reason: string; readonly feature?: string };

const UNKNOWN = 'this ZFS does not know block cloning (zfs-fuse, or OpenZFS before 2.2)';

/**
 * What can be learnt about block cloning on `pool` without writing anything: whether the pool
 * knows and enables `feature@block_cloning` and the module does not disable it. Only a probe
 * clone (probeBlockCloning) proves that blocks are really shared.
 */
export async function blockCloningSupport(pool: string, zpool = 'zpool', signal?: AbortSignal): Promise<BlockCloningSupport> {
  let props: Map<string, string>;
  try {
    props = await poolProperties(zpool, pool, ['feature@block_cloning', 'bcloneused', 'bclonesaved'], signal);
  } catch (error) {
    if (error instanceof CommandError && /bad property|invalid property|unknown property/i.test(`${error.stderr}${error.stdout}`)) {
      return { possible: false, reason: UNKNOWN };
    }
    throw error;
  }
  const feature = props.get('feature@block_cloning');
  if (feature === undefined || !props.has('bclonesaved')) return { possible: false, reason: UNKNOWN };
  if (feature !== 'enabled' && feature !== 'active')
    return { possible: false, reason: `feature@block_cloning is ${feature} on pool ${pool}`, feature };
  const parameter = await open(PARAMETER, 'r')
    .then(async (fh) => {
      try {
        return (await fh.readFile('utf8')).trim();
      } finally {
        await fh.close();
      }
    })
    .catch(() => undefined);
  if (parameter === '0') return { possible: false, reason: `block cloning is disabled in the kernel module (${PARAMETER} is 0)`, feature };
  return { possible: true, feature };
}

/** Probe files are named `<PROBE_PREFIX><pid>-<random>`: the pid tells a live probe from one a killed process left. */
export const PROBE_PREFIX = `${HELPER_PREFIX}probe-`;

/**
 * Removes from `dir` (the root-only holding directory) the probe files of processes that are gone
 * (killed in the middle of a probe): a live process's probe is left alone. Returns the names removed.
 */
export async function removeStaleProbes(dir: string): Promise<string[]> {
  const removed: string[] = [];
  const names = await readdir(dir).catch((error: unknown) => {
    if (isErrno(error, 'ENOENT')) return [] as string[];
    throw error;
  });
  for (const name of names) {
    const m = name.startsWith(PROBE_PREFIX) ? /^(\d+)-[0-9a-f]+$/.exec(name.slice(PROBE_PREFIX.length)) : null;
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (error) {
      alive = !isErrno(error, 'ESRCH');
    }
    if (alive) continue;
    await unlink(`${dir}/${name}`).catch((error: unknown) => {
      if (!isErrno(error, 'ENOENT')) throw error;
    });
    removed.push(name);
  }
  return removed;
}

/**
 * Whether copies from `sourceDir` to `targetDir` (two datasets of `pool`) share blocks: the pool
 * must know and enable `feature@block_cloning`, the module must not disable it, and a probe clone
 * of a fresh file must make the pool's `bclonesaved` grow by the file's size. The probe files are
 * hidden helper files (`.zfs-dynamic-creator-probe-*`) and are removed again. Both directories
 * must be root's own (the rsync plugin uses the root-only holding directory and the staging
 * dataset): the probe files are made and removed by path.
 */
export async function probeBlockCloning(options: ProbeOptions): Promise<BlockCloningProbe> {
  const zpool = options.zpool ?? 'zpool';
  const size = options.probeBytes ?? 1 << 20;
  const support = await blockCloningSupport(options.pool, zpool, options.signal);
  if (!support.possible)
    return { clones: false, reason: support.reason, ...(support.feature !== undefined ? { feature: support.feature } : {}) };
  const feature = support.feature;

  const tag = `${PROBE_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`;
  const source = `${options.sourceDir}/${tag}`;
  const target = `${options.targetDir}/${tag}`;
  try {
    await writeFile(source, randomBytes(size), { flag: 'wx', mode: 0o600 });
    // Blocks still dirty in the open transaction group are copied, not cloned: sync first.
    const savedBefore = await bclonesaved(zpool, options.pool, options.signal);
    await copyFile(source, target, constants.COPYFILE_EXCL);
    const savedAfter = await bclonesaved(zpool, options.pool, options.signal);
    const clones = savedAfter - savedBefore >= size;
    return {
      clones,
      reason: clones
        ? `a probe copy of ${size} bytes shared its blocks (bclonesaved ${savedBefore} -> ${savedAfter})`
        : `a probe copy of ${size} bytes did not share its blocks (bclonesaved ${savedBefore} -> ${savedAfter})`,
      feature,
      savedBefore,
      savedAfter,
    };
  } finally {
    await Promise.all([rm(source, { force: true }), rm(target, { force: true })]);
  }
}

export interface CloneResult {
  /** Regular files cloned (one per hard-link group). */
  readonly files: number;
  readonly bytes: number;
  /** Further names of hard-link groups, made as hard links. */
  readonly links: number;
  readonly directories: number;
  /** Entries left to rsync: already in the target, changed under us, or not what they were listed as. */
  readonly skipped: number;
}

/**
 * How a file's data is copied: `kernel`, copy_file_range (fs.copyFile: shares blocks where the
 * pool clones, else an in-kernel copy); `userspace`, read() and write() through a buffer of at
 * most COPY_CHUNK bytes per file in flight (never shares a block).
 */
export type DataCopy = 'kernel' | 'userspace';

export interface TreeCopyOptions {
  /** Files copied at once (default 4). */
  readonly concurrency?: number;
  readonly data?: DataCopy;
  /** Called after each file copied, with the counts so far. */
  readonly onFile?: (sofar: { files: number; bytes: number }) => void;
}

/** The userspace copy's buffer per file: the memory it holds is concurrency × this at most. */
const COPY_CHUNK = 1 << 20;

/**
 * Copies the first `size` bytes of `input` (the length its fstat gave) to `output` (both open,
 * output empty) by read and write, as copy_file_range copies the length libuv read: what a writer
 * appends meanwhile makes the original newer, and rsync copies it again.
 */
async function readWriteCopy(input: FileHandle, output: FileHandle, size: bigint): Promise<void> {
  const end = Number(size);
  const buffer = Buffer.allocUnsafe(Math.min(Math.max(end, 65536), COPY_CHUNK));
  let position = 0;
  while (position < end) {
    const { bytesRead } = await input.read(buffer, 0, Math.min(buffer.length, end - position), position);
    if (bytesRead === 0) return;
    let written = 0;
    while (written < bytesRead) written += (await output.write(buffer, written, bytesRead - written, position + written)).bytesWritten;
    position += bytesRead;
  }
}

function abortError(signal: AbortSignal): Error {
  return signal.reason instanceof Error ? signal.reason : new Error('clone stopped');
}

/**
 * The time a clone can be given through utimes(): libuv turns the double into a timespec and
 * keeps microseconds only, so a clone's time is the original's truncated to the microsecond.
 * `seconds` is chosen 0.5 µs into that microsecond, which a double near 1.7e9 s (exact to about
 * 240 ns) cannot push out of it.
 */
function clonedTime(ns: bigint): { seconds: number; ns: bigint } {
  const sec = ns / 1_000_000_000n;
  const us = (ns % 1_000_000_000n) / 1_000n;
  return { seconds: Number(sec) + (Number(us) * 1000 + 500) / 1e9, ns: sec * 1_000_000_000n + us * 1_000n };
}

/** Node's mtimeMs for a time in ns, as the verification compares it (whole milliseconds). */
function verifiedMs(ns: bigint): number {
  return Math.floor(Number(ns / 1_000_000_000n) * 1e3 + Number(ns % 1_000_000_000n) / 1e6);
}

/**
 * Whether a clone stamped with clonedTime(ns) has, for rsync, the same time (the same second)
 * and, for the verification, the same millisecond as the original. Not so for a time before
 * 1970, or within about 120 ns of a millisecond's end (a double rounds the original's mtimeMs
 * up): such a file, about one in 8,000, is left to rsync to copy.
 */
function timeSurvivesClone(ns: bigint): boolean {
  return ns >= 0n && verifiedMs(clonedTime(ns).ns) === verifiedMs(ns);
}

/**
 * Whether a file allocates under an eighth of its length (from 1 MiB): sparse, or compressed
 * beyond what data usually is. A clone keeps holes, but where cloning falls back to a copy
 * (data not yet on disk, blockCloning: always on a filesystem that cannot share blocks) the
 * kernel writes them out; such a file is left to rsync, whose --sparse keeps them.
 */
export function mostlyHoles(size: bigint, blocks: bigint): boolean {
  return size >= 1n << 20n && blocks * 512n * 8n < size;
}

/** Opening a name of the user's tree failed because it is not (or no longer) a plain file we can read: left to rsync. */
const CHANGED_ON_OPEN = ['ELOOP', 'ENOENT', 'ENXIO', 'EAGAIN', 'EWOULDBLOCK', 'ETXTBSY', 'ENODEV', 'EACCES', 'EPERM'] as const;

const IN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NOCTTY | constants.O_NONBLOCK;
const OUT_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW | constants.O_NOCTTY;

/**
 * Clones every regular file under `src` to the same relative path under `dst` (copy_file_range
 * through fs.copyFile), creating the directories on the way (mode 0700, owned by root: rsync sets
 * the real ones), and hard-links further names of a file that has several. By descriptor only
 * (see the top of this file): never follows a symlink, never reads a file that is not the one its
 * directory listed, never enters another filesystem or a mount, never overwrites anything already
 * in `dst`. Names are handled as bytes (any name, not only UTF-8). `options.concurrency` files
 * (default 4) are copied at once, each by `options.data` (default kernel: copy_file_range).
 *
 * `src` and `dst` are open directories (the caller's, left open) or paths (opened here with
 * O_DIRECTORY|O_NOFOLLOW on the last component; earlier components are the caller's, trusted).
 * `dst` must be root's own: its new names are made through its descriptor, but hard links are
 * made to the first name's path below it.
 */
export async function cloneTree(
  src: string | DirRef,
  dst: string | DirRef,
  signal: AbortSignal,
  options: TreeCopyOptions = {},
): Promise<CloneResult> {
  if (signal.aborted) throw abortError(signal);
  const from = typeof src === 'string' ? await openDir(src) : src;
  try {
    const to = typeof dst === 'string' ? await openDir(dst) : dst;
    try {
      return await cloneOpenTree(from, to, signal, options);
    } finally {
      if (to !== dst) await to.close();
    }
  } finally {
    if (from !== src) await from.close();
  }
}

/** Opens `e` (a regular file listed in `dir`) by descriptor, or undefined when it is no longer one we can read (left to rsync). */
async function openSource(dir: DirRef, e: EntryInfo): Promise<FileHandle | undefined> {
  try {
    return await open(at(dir, e.name), IN_FLAGS);
  } catch (error) {
    if (CHANGED_ON_OPEN.some((code) => isErrno(error, code))) return undefined;
    throw error;
  }
}

/** Whether an opened file is exactly the one the listing showed, still a regular file (not a FIFO or device swapped in), and worth cloning. */
function cloneable(st: BigIntStats, e: EntryInfo): boolean {
  if (!st.isFile() || Number(st.dev) !== e.dev || Number(st.ino) !== e.ino || !timeSurvivesClone(st.mtimeNs)) return false;
  // Mostly holes: a copy that falls back from cloning would write them out; rsync --sparse keeps them.
  return !mostlyHoles(st.size, st.blocks);
}

/** Clones the open file `input` (stat `st`) to a new `name` in `out`; false when the name is taken (left to rsync). */
async function writeClone(input: FileHandle, st: BigIntStats, out: DirRef, name: string, data: DataCopy): Promise<boolean> {
  let output: FileHandle;
  try {
    output = await open(at(out, name), OUT_FLAGS, 0o600);
  } catch (error) {
    if (isErrno(error, 'EEXIST')) return false;
    throw error;
  }
  let done = false;
  try {
    // The owner first: fs.copyFile gives the copy the source's mode (setuid bits included),
    // which must never sit on a root-owned file.
    await output.chown(Number(st.uid), Number(st.gid));
    if (data === 'kernel') {
      // Through /proc/self/fd: exactly the two files opened above, whatever their names are now.
      await copyFile(`/proc/self/fd/${input.fd}`, `/proc/self/fd/${output.fd}`);
    } else {
      await readWriteCopy(input, output, st.size);
      // The mode as fs.copyFile gives it (after the owner): rsync then has no chmod to do.
      await output.chmod(Number(st.mode) & 0o7777);
    }
    // The time seen before the data was read: a later change makes the original newer.
    await output.utimes(clonedTime(st.atimeNs < 0n ? 0n : st.atimeNs).seconds, clonedTime(st.mtimeNs).seconds);
    done = true;
  } finally {
    await output.close();
    if (!done) await unlink(at(out, name)).catch(() => undefined);
  }
  return true;
}

/** One clone of a tree (see cloneTree): its counts, the hard-link groups met so far. */
class TreeCloner {
  private files = 0;
  private bytes = 0;
  private links = 0;
  private directories = 0;
  private skipped = 0;
  private readonly limiter: Limiter;
  /** dev:ino of a file with several names -> the relative path of its clone in dst (once made) */
  private readonly groups = new Map<string, Promise<string | undefined>>();
  private readonly dstPrefix: Buffer;

  private readonly data: DataCopy;
  private readonly onFile: ((sofar: { files: number; bytes: number }) => void) | undefined;

  constructor(
    dst: DirRef,
    private readonly signal: AbortSignal,
    options: TreeCopyOptions,
  ) {
    this.limiter = new Limiter(Math.max(1, Math.floor(options.concurrency ?? 4)));
    this.data = options.data ?? 'kernel';
    this.onFile = options.onFile;
    this.dstPrefix = Buffer.from(`/proc/self/fd/${dst.fd}/`);
  }

  get result(): CloneResult {
    return { files: this.files, bytes: this.bytes, links: this.links, directories: this.directories, skipped: this.skipped };
  }

  private checkStopped(): void {
    if (this.signal.aborted) throw abortError(this.signal);
  }

  /** Clones `e` (a regular file listed in `dir`) into `out`; returns its rel, or undefined when left to rsync. */
  private async cloneFile(dir: DirRef, out: DirRef, e: EntryInfo): Promise<string | undefined> {
    const input = await openSource(dir, e);
    if (input === undefined) return undefined;
    try {
      const st = await input.stat({ bigint: true });
      if (!cloneable(st, e) || !(await writeClone(input, st, out, e.name, this.data))) return undefined;
      this.files++;
      this.bytes += Number(st.size);
      this.onFile?.({ files: this.files, bytes: this.bytes });
      return e.rel;
    } finally {
      await input.close();
    }
  }

  private async linkOrClone(dir: DirRef, out: DirRef, e: EntryInfo): Promise<void> {
    this.checkStopped();
    if (e.nlink <= 1) {
      if ((await this.cloneFile(dir, out, e)) === undefined) this.skipped++;
      return;
    }
    const key = `${e.dev}:${e.ino}`;
    const first = this.groups.get(key);
    if (first === undefined) {
      const cloning = this.cloneFile(dir, out, e);
      this.groups.set(
        key,
        cloning.catch(() => undefined),
      );
      if ((await cloning) === undefined) this.skipped++;
      return;
    }
    const target = await first;
    if (target === undefined) {
      this.skipped++;
      return;
    }
    try {
      // Within dst (root's own): the clone made for the group's first name.
      await link(Buffer.concat([this.dstPrefix, relToBuffer(target)]), at(out, e.name));
      this.links++;
    } catch (error) {
      if (!isErrno(error, 'EEXIST') && !isErrno(error, 'ENOENT')) throw error;
      this.skipped++;
    }
  }

  /** The regular files of one directory, `concurrency` at once. */
  async dir(dir: DirRef, entries: readonly EntryInfo[], out: DirRef): Promise<void> {
    this.checkStopped();
    // A file on another filesystem (bind-mounted over a name) is not ours to copy.
    const regular = entries.filter((e) => e.type === 'file' && !e.crossDevice);
    await this.limiter.forEach(regular, (e) => this.linkOrClone(dir, out, e));
  }

  /** The directory `child` is made in `out` (root's, 0700: rsync sets the real owner and mode) and opened. */
  async enter(child: EntryInfo, out: DirRef): Promise<DirRef | undefined> {
    this.checkStopped();
    try {
      await mkdir(at(out, child.name), 0o700);
      this.directories++;
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
    }
    try {
      return await openChild(out, child.name);
    } catch (error) {
      // Something else already there: rsync deals with it.
      if (error instanceof NotADirectoryError || isErrno(error, 'ENOENT')) {
        this.skipped++;
        return undefined;
      }
      throw error;
    }
  }

  skip(): void {
    this.skipped++;
  }
}

async function cloneOpenTree(src: DirRef, dst: DirRef, signal: AbortSignal, options: TreeCopyOptions): Promise<CloneResult> {
  const cloner = new TreeCloner(dst, signal, options);
  await walkDirs<DirRef>(
    src,
    dst,
    {
      dir: (dir, _rel, entries, out) => cloner.dir(dir, entries, out),
      enter: (child, out) => cloner.enter(child, out),
      leave: (out) => out.close(),
      skipped: () => cloner.skip(),
    },
    { signal, readTargets: false },
  );
  return cloner.result;
}
