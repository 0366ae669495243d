/**
 * Descriptor-based filesystem primitives for trees that hostile users control while we work.
 *
 * Node has no openat/unlinkat, so every operation below a directory goes through the directory's
 * descriptor: with the directory open as fd N, the path `/proc/self/fd/N/<name>` is resolved relative
 * to that directory exactly like openat(N, name). `<name>` is a single component (never `.`, `..` or
 * anything with a slash), and every operation used on it either does not follow a final symlink
 * (lstat, unlink, rmdir, rename, readlink, symlink, mkdir) or is an open with O_NOFOLLOW. No path
 * component can be redirected, and a rename of the directory itself meanwhile does not matter.
 *
 * Names are raw bytes. Relative paths and names are carried losslessly as JavaScript strings in
 * 'latin1' encoding (one character per byte, `Buffer.from(rel, 'latin1')` gives the bytes back);
 * `displayPath` decodes them as UTF-8 for messages.
 *
 * Metadata of an entry that is not open (symlinks included) is changed through an O_PATH descriptor:
 * `chown`/`chmod`/`utimes` on `/proc/self/fd/<O_PATH fd>` act on exactly that inode, a symlink
 * itself included (measured: the symlink's owner and times change, its target's do not).
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { constants, lstatSync, readlinkSync, unlinkSync, type Stats } from 'node:fs';
import {
  chmod,
  chown,
  copyFile,
  lstat,
  mkdir,
  open,
  readdir,
  readFile,
  readlink,
  rename,
  rmdir,
  symlink,
  unlink,
  utimes,
  type FileHandle,
} from 'node:fs/promises';
import { boundHeapGrowth } from './heap.js';
import { InodeIndex } from './holders.js';
import { copyXattrs } from './xattr.js';
import { Limiter } from './limit.js';

// ---------------------------------------------------------------------------------------------
// Names and relative paths

/** A relative path or name (latin1 string) to its raw bytes. */
export function relToBuffer(rel: string): Buffer {
  if (/[\u0100-\uffff]/.test(rel)) throw new TypeError(`not a latin1 (raw byte) string: ${JSON.stringify(rel)}`);
  return Buffer.from(rel, 'latin1');
}

/** Raw bytes of a name or relative path to the latin1 string form used everywhere here. */
export function relFromBuffer(bytes: Buffer): string {
  return bytes.toString('latin1');
}

/** An ordinary (UTF-8) JavaScript string, e.g. a name typed by a person, to the latin1 form. */
export function relFromText(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}

/** A latin1 relative path as text for messages (UTF-8 decoded; invalid bytes become U+FFFD). */
export function displayPath(rel: string): string {
  return Buffer.from(rel, 'latin1').toString('utf8');
}

/** `rel/name`, or `name` at the top. */
export function joinRel(rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`;
}

/** The components of a relative path ('' has none). */
export function splitRel(rel: string): string[] {
  return rel === '' ? [] : rel.split('/');
}

function checkName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new TypeError(`not a single path component: ${JSON.stringify(displayPath(name))}`);
  }
  if (/[\u0100-\uffff]/.test(name)) throw new TypeError(`not a latin1 (raw byte) name: ${JSON.stringify(name)}`);
}

// ---------------------------------------------------------------------------------------------
// Types and errors

export interface Identity {
  dev: number;
  ino: number;
}

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'char' | 'block';

export interface EntryInfo {
  /** Path relative to the walk's root, latin1; '' for the root itself. */
  rel: string;
  /** Last component, latin1; '' for the root. */
  name: string;
  type: EntryType;
  dev: number;
  ino: number;
  /** Permission bits including setuid, setgid and sticky (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** 512-byte blocks allocated on disk (st_blocks: fewer than size / 512 for a file with holes). */
  blocks?: number;
  nlink: number;
  rdev: number;
  /** Floored to whole milliseconds. */
  mtimeMs: number;
  ctimeMs: number;
  /** Unfloored (sub-microsecond precision), for digests and for setting times. */
  atimeExactMs: number;
  mtimeExactMs: number;
  ctimeExactMs: number;
  /** Symlink target (latin1), when read. */
  target?: string;
  /** On another device than the walk's root: reported, never descended or removed. */
  crossDevice?: boolean;
}

/** The tree changed under us (an entry vanished, or a name now refers to another inode): walk again. */
export class TreeChangedError extends Error {
  override name = 'TreeChangedError';
  constructor(
    readonly rel: string,
    message: string,
  ) {
    super(message);
  }
}

/** An opened directory is not the one expected (another device/inode). */
export class IdentityError extends TreeChangedError {
  override name = 'IdentityError';
  constructor(
    rel: string,
    readonly path: string,
    readonly expected: Identity,
    readonly actual: Identity,
  ) {
    super(rel, `${path} is not the directory expected (dev ${actual.dev} inode ${actual.ino}, expected dev ${expected.dev} inode ${expected.ino})`);
  }
}

/** What was to be opened as a directory is a symlink, a file, or something else. */
export class NotADirectoryError extends Error {
  override name = 'NotADirectoryError';
  constructor(
    readonly path: string,
    readonly actualType: EntryType | undefined,
  ) {
    super(actualType === 'symlink' ? `${path} is a symbolic link, not a directory` : `${path} is not a directory${actualType ? ` (a ${actualType})` : ''}`);
  }
}

/** Another filesystem (or a bind mount) inside the tree: refused. */
export class CrossDeviceError extends Error {
  override name = 'CrossDeviceError';
  constructor(
    readonly rel: string,
    readonly path: string,
  ) {
    super(`${path} is on another filesystem or is a mount point; refusing to cross it`);
  }
}

/** A fifo, socket or device where a copy was asked for. */
export class UnsupportedEntryError extends Error {
  override name = 'UnsupportedEntryError';
  constructor(
    readonly rel: string,
    readonly type: EntryType,
  ) {
    super(`${displayPath(rel)} is a ${type}; not copied`);
  }
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

export function typeOf(st: Stats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'char';
  return 'block';
}

function infoFrom(st: Stats, rel: string, name: string): EntryInfo {
  return {
    rel,
    name,
    type: typeOf(st),
    dev: st.dev,
    ino: st.ino,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    size: st.size,
    blocks: st.blocks,
    nlink: st.nlink,
    rdev: st.rdev,
    mtimeMs: Math.floor(st.mtimeMs),
    ctimeMs: Math.floor(st.ctimeMs),
    atimeExactMs: st.atimeMs,
    mtimeExactMs: st.mtimeMs,
    ctimeExactMs: st.ctimeMs,
  };
}

// ---------------------------------------------------------------------------------------------
// Directory references

const O_PATH = 0o10000000;
const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** An open directory: every operation below it goes through its descriptor. */
export class DirRef {
  private closed = false;
  private mnt: Promise<number | undefined> | undefined;
  /** `/proc/self/fd/N/` as bytes. */
  readonly prefix: Buffer;

  constructor(
    readonly handle: FileHandle,
    readonly dev: number,
    readonly ino: number,
    /** For messages only (UTF-8 text, as the directory was reached). */
    readonly path: string,
  ) {
    this.prefix = Buffer.from(`/proc/self/fd/${handle.fd}/`);
  }

  get fd(): number {
    return this.handle.fd;
  }

  get identity(): Identity {
    return { dev: this.dev, ino: this.ino };
  }

  /** `/proc/self/fd/N`: the directory itself. */
  get self(): string {
    return `/proc/self/fd/${this.handle.fd}`;
  }

  /** `/proc/self/fd/N/<name>` as bytes: resolved like openat(N, name). */
  at(name: string): Buffer {
    return at(this, name);
  }

  /** The mount id (from /proc/self/fdinfo), to tell a bind mount of the same filesystem apart. */
  mountId(): Promise<number | undefined> {
    this.mnt ??= readFile(`/proc/self/fdinfo/${this.handle.fd}`, 'utf8').then(
      (text) => {
        const m = /^mnt_id:\s*(\d+)/m.exec(text);
        return m ? Number(m[1]) : undefined;
      },
      () => undefined,
    );
    return this.mnt;
  }

  /** The directory's own metadata (fstat), as the root entry (rel ''). */
  async info(): Promise<EntryInfo> {
    return infoFrom(await this.handle.stat(), '', '');
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close();
  }
}

/** `/proc/self/fd/N/<name>` as bytes, for any fs call that does not follow the final component. */
export function at(dir: DirRef, name: string): Buffer {
  checkName(name);
  return atListed(dir, name);
}

/** at() for a name just read from the directory (known to be a single component). */
function atListed(dir: DirRef, name: string): Buffer {
  const buf = Buffer.allocUnsafe(dir.prefix.length + name.length);
  dir.prefix.copy(buf, 0);
  buf.write(name, dir.prefix.length, 'latin1');
  return buf;
}

async function classify(path: string | Buffer): Promise<EntryType | undefined> {
  try {
    return typeOf(await lstat(path));
  } catch {
    return undefined;
  }
}

async function openDirAt(path: string | Buffer, display: string, rel: string, expect: Identity | undefined): Promise<DirRef> {
  let handle: FileHandle;
  try {
    handle = await open(path, DIR_FLAGS);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ENOTDIR' || code === 'ELOOP') throw new NotADirectoryError(display, await classify(path));
    throw error;
  }
  try {
    const st = await handle.stat();
    if (expect !== undefined && (st.dev !== expect.dev || st.ino !== expect.ino)) {
      throw new IdentityError(rel, display, expect, { dev: st.dev, ino: st.ino });
    }
    return new DirRef(handle, st.dev, st.ino, display);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * Opens a directory by path (O_DIRECTORY|O_NOFOLLOW: a symlink as the last component is refused;
 * earlier components are the caller's, trusted). With `expect`, refuses another directory.
 */
export async function openDir(path: string | Buffer, expect?: Identity): Promise<DirRef> {
  const display = typeof path === 'string' ? path : path.toString('utf8');
  const dir = await openDirAt(path, display, '', expect);
  // Everything below goes through /proc/self/fd/N: make sure it leads back to this directory.
  const through = await lstat(`${dir.self}/.`).catch(() => undefined);
  if (through?.dev !== dir.dev || through.ino !== dir.ino) {
    await dir.close();
    throw new Error(`/proc/self/fd does not lead to ${display} (is /proc mounted?); refusing to work without descriptor-relative paths`);
  }
  return dir;
}

/** A second, independent reference to the same directory (through its magic link, not its path). */
export async function reopen(dir: DirRef): Promise<DirRef> {
  // No O_NOFOLLOW here: /proc/self/fd/N is itself a (magic) link, which jumps to exactly the open directory.
  const handle = await open(dir.self, constants.O_RDONLY | constants.O_DIRECTORY);
  const st = await handle.stat();
  if (st.dev !== dir.dev || st.ino !== dir.ino) {
    await handle.close();
    throw new IdentityError('', dir.path, dir.identity, { dev: st.dev, ino: st.ino });
  }
  return new DirRef(handle, st.dev, st.ino, dir.path);
}

/** Opens the subdirectory `name` (latin1) of `dir` through its descriptor, never following a symlink. */
export async function openChild(dir: DirRef, name: string, expect?: Identity): Promise<DirRef> {
  return openDirAt(at(dir, name), `${dir.path}/${displayPath(name)}`, name, expect);
}

/** lstat of `name` in `dir` (never follows), as an EntryInfo with the given rel. */
export async function statAt(dir: DirRef, name: string, rel = name, readTarget = true): Promise<EntryInfo> {
  const path = at(dir, name);
  const info = infoFrom(await lstat(path), rel, name);
  if (readTarget && info.type === 'symlink') info.target = relFromBuffer(await readlink(path, { encoding: 'buffer' }));
  return info;
}

/** The names in `dir` (latin1), sorted by byte value. */
export async function listNames(dir: DirRef): Promise<string[]> {
  const names = await readdir(dir.self, { encoding: 'buffer' });
  return names.map(relFromBuffer).sort();
}

// ---------------------------------------------------------------------------------------------
// Walking

export interface WalkOptions {
  /** lstat calls in flight and subtrees walked in parallel (default 32). */
  concurrency?: number;
  signal?: AbortSignal;
  /** Read symlink targets into EntryInfo.target (default true). */
  readTargets?: boolean;
  /**
   * lstat in the main thread instead of through the libuv thread pool (default false), giving the
   * event loop a turn every 256 entries. Faster when metadata is cached (measured 2 to 3 times on
   * this kind of machine, ext4 and zfs-fuse), but gains nothing from parallel I/O on a cold cache.
   */
  syncStat?: boolean;
}

export interface WalkResult {
  /** Entries reported, the root included. */
  entries: number;
  /** Sum of the sizes of regular files. */
  bytes: number;
}

/** State shared by one walk. Errors are recorded here (the first wins) and rethrown at the end. */
class WalkContext {
  readonly limiter: Limiter;
  /** Subtrees that may still be walked in parallel to their siblings. */
  slots: number;
  /** Entries of listings being handled now (held in memory). */
  held = 0;
  error: unknown;
  entries = 0;
  bytes = 0;
  constructor(
    readonly concurrency: number,
    readonly signal: AbortSignal | undefined,
    readonly readTargets: boolean,
    readonly syncStat = false,
  ) {
    this.limiter = new Limiter(concurrency);
    this.slots = concurrency - 1;
  }
  fail(error: unknown): void {
    this.error ??= error;
  }
  get stopped(): boolean {
    if (this.error === undefined && this.signal?.aborted) this.error = this.signal.reason ?? new Error('aborted');
    return this.error !== undefined;
  }
  count(info: EntryInfo): void {
    this.entries++;
    if (info.type === 'file') this.bytes += info.size;
  }
}

/**
 * A subtree is started in parallel to its siblings only while fewer entries than this are held in
 * listings being handled: what a walk holds is then about this plus depth × the largest directory,
 * however many subtrees could run at once. (lstat calls stay `concurrency` in flight either way.)
 */
export const WALK_HELD_BUDGET = 4096;

/** Entries handled synchronously (syncStat) before the event loop gets a turn. */
const SYNC_CHUNK = 256;

function contextOf(opts: WalkOptions | undefined): WalkContext {
  // Walks make garbage fast: from the first one on, keep the heap near its live data (util/heap.ts).
  // Not earlier: a run that only rejects a name would collect more often while it loads.
  boundHeapGrowth();
  const concurrency = Math.max(1, Math.floor(opts?.concurrency ?? 32));
  return new WalkContext(concurrency, opts?.signal, opts?.readTargets ?? true, opts?.syncStat ?? false);
}

/** Runs fn over items, at most the context's concurrency at once, stopping at the first error. */
async function forEachLimited<T>(ctx: WalkContext, items: readonly T[], fn: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !ctx.stopped) {
      const i = next++;
      try {
        await ctx.limiter.run(() => fn(items[i]!, i));
      } catch (error) {
        ctx.fail(error);
        throw error;
      }
    }
  };
  const workers: Promise<void>[] = [];
  for (let k = 0; k < Math.min(ctx.concurrency, items.length); k++) workers.push(worker());
  const results = await Promise.allSettled(workers);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}

/**
 * Lists `dir` (rel `rel`): every entry lstat-ed through the descriptor, in byte order of names.
 * A name that vanishes between readdir and lstat is a TreeChangedError, or skipped with `tolerateVanished`.
 */
async function listDir(ctx: WalkContext, dir: DirRef, rel: string, rootDev: number, tolerateVanished = false): Promise<EntryInfo[]> {
  let names: string[];
  try {
    names = await listNames(dir);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new TreeChangedError(rel, `${dir.path} vanished while being read`);
    throw error;
  }
  const infos: (EntryInfo | undefined)[] = new Array<EntryInfo | undefined>(names.length);
  const vanished = (name: string, error: unknown): void => {
    const code = errnoCode(error);
    // EINVAL: readlink of something that stopped being a symlink.
    if (code !== 'ENOENT' && code !== 'EINVAL') throw error;
    if (!tolerateVanished) throw new TreeChangedError(joinRel(rel, name), `${dir.path}/${displayPath(name)} changed while being read`);
  };
  const finish = (info: EntryInfo): EntryInfo => {
    if (info.dev !== rootDev) info.crossDevice = true;
    return info;
  };
  if (ctx.syncStat) {
    for (let i = 0; i < names.length; i++) {
      // Let the event loop run between chunks of a large directory.
      if (i > 0 && i % SYNC_CHUNK === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      const name = names[i]!;
      const path = atListed(dir, name);
      try {
        const info = infoFrom(lstatSync(path), joinRel(rel, name), name);
        if (ctx.readTargets && info.type === 'symlink') info.target = relFromBuffer(readlinkSync(path, { encoding: 'buffer' }));
        infos[i] = finish(info);
      } catch (error) {
        vanished(name, error);
      }
    }
  } else {
    await forEachLimited(ctx, names, async (name, i) => {
      const path = atListed(dir, name);
      try {
        const info = infoFrom(await lstat(path), joinRel(rel, name), name);
        if (ctx.readTargets && info.type === 'symlink') info.target = relFromBuffer(await readlink(path, { encoding: 'buffer' }));
        infos[i] = finish(info);
      } catch (error) {
        vanished(name, error);
      }
    });
  }
  // A dataset's snapshot directory (snapdir=visible) is ZFS's, not the tree's: never walked.
  return infos.filter((i): i is EntryInfo => i !== undefined && !(rel === '' && isZfsControlDir(i)));
}

/** ZFSCTL_INO_ROOT: the inode number OpenZFS gives a dataset's `.zfs` directory (no object has it). */
const ZFS_CTLDIR_INO = 0xffffffffffff;

/** Whether a top-level entry is a ZFS dataset's `.zfs` control directory (not a user's `.zfs`). */
export function isZfsControlDir(info: Pick<EntryInfo, 'name' | 'type' | 'ino'>): boolean {
  return info.name === '.zfs' && info.type === 'dir' && info.ino === ZFS_CTLDIR_INO;
}

/** Opens a subdirectory found in a listing: same inode, same mount, or an error. */
async function openListed(parent: DirRef, info: EntryInfo, rootMount: number | undefined): Promise<DirRef> {
  let child: DirRef;
  try {
    child = await openChild(parent, info.name, { dev: info.dev, ino: info.ino });
  } catch (error) {
    if (error instanceof TreeChangedError) throw error;
    if (error instanceof NotADirectoryError || errnoCode(error) === 'ENOENT') {
      throw new TreeChangedError(info.rel, `${parent.path}/${displayPath(info.name)} changed while being walked`);
    }
    throw error;
  }
  const mount = await child.mountId();
  if (rootMount !== undefined && mount !== undefined && mount !== rootMount) {
    await child.close();
    throw new CrossDeviceError(info.rel, child.path);
  }
  return child;
}

/**
 * Runs `task` for each item: in parallel while the context has free slots (bounding open
 * descriptors by depth × concurrency), inline otherwise. Never throws; errors go to the context.
 */
async function fanOut<T>(ctx: WalkContext, items: readonly T[], task: (item: T, index: number) => Promise<void>): Promise<void> {
  const pending: Promise<void>[] = [];
  for (let i = 0; i < items.length && !ctx.stopped; i++) {
    const item = items[i]!;
    if (ctx.slots > 0 && ctx.held < WALK_HELD_BUDGET && i < items.length - 1) {
      ctx.slots--;
      pending.push(
        task(item, i)
          .catch((error: unknown) => ctx.fail(error))
          .finally(() => {
            ctx.slots++;
          }),
      );
    } else {
      await task(item, i).catch((error: unknown) => ctx.fail(error));
    }
  }
  await Promise.all(pending);
}

interface DigestSink {
  hash: boolean;
  index: InodeIndex | undefined;
}

function entryRecord(e: EntryInfo): string {
  return `${e.name}\0${e.type}\0${e.mode}\0${e.uid}\0${e.gid}\0${e.size}\0${e.mtimeExactMs}\0${e.ctimeExactMs}\0${e.ino}\0${e.nlink}\0${e.rdev}\0${e.target ?? ''}\0${e.crossDevice ? 'x' : ''}\n`;
}

async function descend(
  ctx: WalkContext,
  dir: DirRef,
  rel: string,
  root: { dev: number; mount: number | undefined },
  visit: (e: EntryInfo) => void | Promise<void>,
  digest: DigestSink | undefined,
): Promise<Buffer | undefined> {
  if (ctx.stopped) return undefined;
  const infos = await listDir(ctx, dir, rel, root.dev);
  let hash: Hash | undefined;
  if (digest?.hash) hash = createHash('sha256');
  ctx.held += infos.length;
  try {
    for (const info of infos) {
      if (ctx.stopped) return undefined;
      ctx.count(info);
      hash?.update(entryRecord(info), 'latin1');
      if (digest?.index && !info.crossDevice) digest.index.add(info.ino);
      const r = visit(info);
      if (r !== undefined) await r;
    }
  } finally {
    ctx.held -= infos.length;
  }
  const subdirs = infos.filter((i) => i.type === 'dir' && !i.crossDevice);
  const childDigests: (Buffer | undefined)[] = new Array<Buffer | undefined>(subdirs.length);
  await fanOut(ctx, subdirs, async (info, i) => {
    const child = await openListed(dir, info, root.mount);
    try {
      childDigests[i] = await descend(ctx, child, info.rel, root, visit, digest);
    } finally {
      await child.close();
    }
  });
  if (!hash || ctx.stopped) return undefined;
  const top = createHash('sha256').update(hash.digest());
  for (const d of childDigests) top.update(d!);
  return top.digest();
}

async function runWalk(
  root: DirRef,
  visit: (e: EntryInfo) => void | Promise<void>,
  opts: WalkOptions | undefined,
  digest: DigestSink | undefined,
): Promise<{ result: WalkResult; digest: Buffer | undefined }> {
  const ctx = contextOf(opts);
  const rootInfo = await root.info();
  ctx.count(rootInfo);
  digest?.index?.add(rootInfo.ino);
  let d: Buffer | undefined;
  try {
    const r = visit(rootInfo);
    if (r !== undefined) await r;
    d = await descend(ctx, root, '', { dev: root.dev, mount: await root.mountId() }, visit, digest);
  } catch (error) {
    ctx.fail(error);
  }
  if (ctx.stopped) throw ctx.error;
  if (d !== undefined) d = createHash('sha256').update(entryRecord(rootInfo), 'latin1').update(d).digest();
  return { result: { entries: ctx.entries, bytes: ctx.bytes }, digest: d };
}

/**
 * Reports every entry of the tree below `root` (root itself as rel ''), never following a symlink.
 * Subdirectories are opened through their parent's descriptor and must have the identity their
 * listing showed (else TreeChangedError). Directories on another device are reported with
 * crossDevice and not descended; a bind mount of the same filesystem is a CrossDeviceError.
 *
 * `visit` is awaited entry by entry within one directory (in byte order of names, a directory
 * before its contents); entries of different directories may be visited concurrently.
 */
export async function walk(root: DirRef, visit: (e: EntryInfo) => void | Promise<void>, opts?: WalkOptions): Promise<WalkResult> {
  return (await runWalk(root, visit, opts, undefined)).result;
}

/** A digest that changes when anything in the tree changes, and the tree's inodes, from one walk. */
export async function treeDigest(
  root: DirRef,
  opts?: WalkOptions & { visit?: (e: EntryInfo) => void },
): Promise<{ digest: string; index: InodeIndex; entries: number; bytes: number }> {
  const index = new InodeIndex(root.dev);
  const { result, digest } = await runWalk(root, opts?.visit ?? (() => undefined), opts, { hash: true, index });
  return { digest: digest!.toString('hex'), index, ...result };
}

/** What walkPair calls for each rel; `alone`: below a directory only side a holds (see WalkPairOptions.alone). */
export type PairVisit = (rel: string, x: EntryInfo | undefined, y: EntryInfo | undefined, alone?: boolean) => void | Promise<void>;

async function descendPair(
  ctx: WalkContext,
  a: DirRef,
  b: DirRef,
  rel: string,
  roots: [{ dev: number; mount: number | undefined }, { dev: number; mount: number | undefined }],
  visit: PairVisit,
  opts: WalkPairOptions | undefined,
): Promise<void> {
  if (ctx.stopped) return;
  const [xs, ys] = await Promise.all([listDir(ctx, a, rel, roots[0].dev), listDir(ctx, b, rel, roots[1].dev)]);
  const both: [EntryInfo, EntryInfo | undefined][] = [];
  const held = xs.length + ys.length;
  ctx.held += held;
  try {
    await visitMerged(ctx, xs, ys, visit, both, opts?.alone === true);
  } finally {
    ctx.held -= held;
  }
  if (ctx.stopped) return;
  if (opts?.listed) {
    const r = opts.listed(rel);
    if (r !== undefined) await r;
  }
  await fanOut(ctx, both, async ([p, q]) => {
    const ca = await openListed(a, p, roots[0].mount);
    try {
      if (q === undefined) {
        await descend(ctx, ca, p.rel, roots[0], (e) => visit(e.rel, e, undefined, true), undefined);
        return;
      }
      const cb = await openListed(b, q, roots[1].mount);
      try {
        await descendPair(ctx, ca, cb, p.rel, roots, visit, opts);
      } finally {
        await cb.close();
      }
    } finally {
      await ca.close();
    }
  });
}

/** Visits the union of two listings (each in byte order of names); directories both hold go to `both`. */
async function visitMerged(
  ctx: WalkContext,
  xs: readonly EntryInfo[],
  ys: readonly EntryInfo[],
  visit: PairVisit,
  both: [EntryInfo, EntryInfo | undefined][],
  alone: boolean,
): Promise<void> {
  let i = 0;
  let j = 0;
  while (i < xs.length || j < ys.length) {
    if (ctx.stopped) return;
    const x = xs[i];
    const y = ys[j];
    let pair: [EntryInfo | undefined, EntryInfo | undefined];
    if (x !== undefined && (y === undefined || x.name < y.name)) {
      pair = [x, undefined];
      i++;
    } else if (y !== undefined && (x === undefined || y.name < x.name)) {
      pair = [undefined, y];
      j++;
    } else {
      pair = [x, y];
      i++;
      j++;
    }
    const [p, q] = pair;
    if (p) ctx.count(p);
    else if (q) ctx.count(q);
    const r = visit((p ?? q)!.rel, p, q);
    if (r !== undefined) await r;
    if (p?.type === 'dir' && q?.type === 'dir' && !p.crossDevice && !q.crossDevice) both.push([p, q]);
    else if (alone && p?.type === 'dir' && !p.crossDevice) both.push([p, undefined]);
  }
}

export interface WalkPairOptions extends WalkOptions {
  /**
   * Called (and awaited) once every entry of a directory both sides hold (rel; '' for the roots)
   * has been visited, before anything below it is: its entries are complete from here on.
   */
  listed?: (rel: string) => void | Promise<void>;
  /**
   * Also walk side a's subtree below a directory side b lacks (or holds as another type, or on
   * another device): each entry there is visited with y undefined and `alone` true.
   */
  alone?: boolean;
}

/**
 * The union of two trees in one pass: visit(rel, x, y) for every rel present on either side
 * (undefined where absent). Descends only where both sides are directories on their own root's
 * device; an entry present on one side only is reported once, its subtree not walked (side a's
 * is, with `alone`).
 * `entries` counts rels (each once); `bytes` counts side a's files (side b's where a lacks the rel).
 */
export async function walkPair(
  a: DirRef,
  b: DirRef,
  visit: PairVisit,
  opts?: WalkPairOptions,
): Promise<WalkResult> {
  const ctx = contextOf(opts);
  try {
    const [x, y] = await Promise.all([a.info(), b.info()]);
    ctx.count(x);
    const r = visit('', x, y);
    if (r !== undefined) await r;
    const roots: [{ dev: number; mount: number | undefined }, { dev: number; mount: number | undefined }] = [
      { dev: a.dev, mount: await a.mountId() },
      { dev: b.dev, mount: await b.mountId() },
    ];
    await descendPair(ctx, a, b, '', roots, visit, opts);
  } catch (error) {
    ctx.fail(error);
  }
  if (ctx.stopped) throw ctx.error;
  return { entries: ctx.entries, bytes: ctx.bytes };
}

/**
 * What walkDirs does at each directory. `T` is the caller's state for a directory (for example
 * the matching directory of another tree), made by `enter` just before the walk descends.
 */
export interface DirVisitor<T> {
  /**
   * Called once per directory, with the directory open (`dir`, reached through its parent's
   * descriptor and checked to be the inode its listing showed) and listed (`entries`: lstat-ed
   * through the descriptor, byte order of names). Awaited before the directory is closed and
   * before its subdirectories are walked: whatever is opened below `dir` (e.g. `at(dir, name)`
   * with O_NOFOLLOW) must be opened while this runs.
   */
  dir(dir: DirRef, rel: string, entries: readonly EntryInfo[], state: T): Promise<void>;
  /** The state of subdirectory `child` (of a directory whose state is `parent`), or undefined to leave it out. */
  enter(child: EntryInfo, parent: T): Promise<T | undefined>;
  /** After a directory and everything below it (not called for the root's state). */
  leave?(state: T): Promise<void>;
  /**
   * A subdirectory left out because it is no longer what its listing showed (replaced, renamed,
   * a symlink now, gone) or is a mount point: `reason` says which. Without this callback such a
   * change is an error (TreeChangedError, CrossDeviceError), as in walk().
   */
  skipped?(child: EntryInfo, reason: Error): void;
}

/**
 * Walks the tree below `root` directory by directory, handing each open directory and its
 * listing to `visitor.dir`, with the same guarantees as walk(): nothing followed through a
 * symlink, each subdirectory opened through its parent's descriptor (O_DIRECTORY|O_NOFOLLOW) and
 * checked to be the inode its listing showed, other filesystems (crossDevice entries) listed but
 * never entered, a bind mount of the same filesystem never entered. With `visitor.skipped`,
 * names that vanish between the listing and their lstat are left out of the listing and changed
 * subdirectories are skipped; without it both are a TreeChangedError, as in walk(). Subtrees are
 * walked in parallel as walk() does (open descriptors bounded by depth x concurrency).
 */
export async function walkDirs<T>(root: DirRef, rootState: T, visitor: DirVisitor<T>, opts?: WalkOptions): Promise<WalkResult> {
  const ctx = contextOf(opts);
  const tolerant = visitor.skipped !== undefined;
  const rootMount = await root.mountId();
  const descendDirs = async (dir: DirRef, rel: string, state: T): Promise<void> => {
    if (ctx.stopped) return;
    const infos = await listDir(ctx, dir, rel, root.dev, tolerant);
    for (const info of infos) ctx.count(info);
    await visitor.dir(dir, rel, infos, state);
    const subdirs = infos.filter((i) => i.type === 'dir' && !i.crossDevice);
    await fanOut(ctx, subdirs, async (info) => {
      if (ctx.stopped) return;
      let child: DirRef;
      try {
        child = await openListed(dir, info, rootMount);
      } catch (error) {
        if (tolerant && (error instanceof TreeChangedError || error instanceof CrossDeviceError)) {
          visitor.skipped!(info, error);
          return;
        }
        throw error;
      }
      try {
        const childState = await visitor.enter(info, state);
        if (childState === undefined) return;
        try {
          await descendDirs(child, info.rel, childState);
        } finally {
          await visitor.leave?.(childState);
        }
      } finally {
        await child.close();
      }
    });
  };
  try {
    ctx.count(await root.info());
    await descendDirs(root, '', rootState);
  } catch (error) {
    ctx.fail(error);
  }
  if (ctx.stopped) throw ctx.error;
  return { entries: ctx.entries, bytes: ctx.bytes };
}

// ---------------------------------------------------------------------------------------------
// Removal

export interface RemoveOptions {
  signal?: AbortSignal;
  /**
   * Called (and awaited) as each directory is entered ('enter', before its contents are removed)
   * and each time it has been listed ('listed': its subdirectories lstat-ed, nothing listed yet
   * removed or entered).
   */
  onProgress?: (p: { removed: number; rel: string; phase: 'enter' | 'listed' }) => void | Promise<void>;
  /** Parallel unlinks and subtrees (default 32). */
  concurrency?: number;
  /** Times one directory is re-listed while its contents keep changing (default 20). */
  maxRounds?: number;
  /** lstat and unlink in the main thread (see WalkOptions.syncStat; default false). */
  syncStat?: boolean;
  /**
   * Remove only these entries (what a verification saw): anything else met is left where it is,
   * and the removal ends with an UnverifiedEntriesError naming it. Each directory is made root's
   * and 0700 (by descriptor) before it is listed, so that nobody can rename anything into or out
   * of it between the check of an entry and its removal; a directory left is given back its owner
   * and mode.
   */
  verified?: VerifiedSet;
}

/**
 * The entries one verification saw (type and inode, on the one device of the tree it walked): a
 * sorted typed array per type (util/holders.ts InodeIndex), 4 to 8 bytes an entry.
 */
export class VerifiedSet {
  private readonly byType = new Map<EntryType, InodeIndex>();
  constructor(readonly dev: number) {}
  /** Owners and modes of directories a crashed removal had locked (see lockDir), by inode. */
  private readonly owners = new Map<number, { uid: number; gid: number; mode: number }>();
  add(e: { type: EntryType; dev: number; ino: number }): void {
    if (e.dev !== this.dev) return;
    let index = this.byType.get(e.type);
    if (index === undefined) this.byType.set(e.type, (index = new InodeIndex(this.dev)));
    index.add(e.ino);
  }
  has(e: { type: EntryType; dev: number; ino: number }): boolean {
    return this.byType.get(e.type)?.has(e.dev, e.ino) ?? false;
  }
  /** A directory found locked by an earlier removal: the owner and mode to give it back. */
  lockedBefore(ino: number, owner: { uid: number; gid: number; mode: number }): void {
    this.owners.set(ino, owner);
  }
  ownerBefore(ino: number): { uid: number; gid: number; mode: number } | undefined {
    return this.owners.get(ino);
  }
  /** Distinct entries held. */
  get size(): number {
    let n = 0;
    for (const index of this.byType.values()) n += index.size;
    return n;
  }
}

/** Entries a verified removal met that the verification never saw (moved in meanwhile): left where they are. */
export class UnverifiedEntriesError extends Error {
  override name = 'UnverifiedEntriesError';
  constructor(
    /** Paths relative to the removed directory's parent (latin1), the first LEFT_NAMED. */
    readonly rels: readonly string[],
    readonly count: number,
  ) {
    super(`${count} entr${count === 1 ? 'y' : 'ies'} the verification never saw (${rels.slice(0, 3).map(displayPath).join(', ')}${count > 3 ? ', …' : ''}) left where ${count === 1 ? 'it is' : 'they are'}, not removed`);
  }
}

/** Entries left that an UnverifiedEntriesError names (the rest are counted). */
const LEFT_NAMED = 100;

interface RemoveState {
  removed: number;
  readonly verified: VerifiedSet | undefined;
  readonly left: string[];
  leftCount: number;
}

/**
 * Removes the directory `name` in `parent` and everything below it, by descriptor: never follows a
 * symlink (a symlink is unlinked, its target untouched), never crosses to another filesystem or a
 * mount (CrossDeviceError, nothing across it removed), and opens each subdirectory only if it is
 * the inode its listing showed. A name that changes meanwhile is re-examined in the next round.
 * `expect` is the identity of the directory to remove (IdentityError otherwise).
 * Returns { removed: 0 } when `name` no longer exists.
 */
export async function removeTree(parent: DirRef, name: string, expect: Identity, opts?: RemoveOptions): Promise<{ removed: number }> {
  let top: DirRef;
  try {
    top = await openChild(parent, name, expect);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return { removed: 0 };
    throw error;
  }
  const ctx = new WalkContext(Math.max(1, Math.floor(opts?.concurrency ?? 32)), opts?.signal, false, opts?.syncStat ?? false);
  const state: RemoveState = { removed: 0, verified: opts?.verified, left: [], leftCount: 0 };
  const maxRounds = opts?.maxRounds ?? 20;
  try {
    const parentMount = await parent.mountId();
    const topMount = await top.mountId();
    if (top.dev !== parent.dev || (parentMount !== undefined && topMount !== undefined && parentMount !== topMount)) {
      throw new CrossDeviceError(name, top.path);
    }
    if (state.verified !== undefined && !state.verified.has({ type: 'dir', dev: top.dev, ino: top.ino })) leave(state, name);
    else await emptyDir(ctx, top, name, { dev: top.dev, mount: topMount }, state, opts?.onProgress, maxRounds);
  } catch (error) {
    ctx.fail(error);
  } finally {
    await top.close();
  }
  if (ctx.stopped) throw ctx.error;
  if (state.leftCount > 0) throw new UnverifiedEntriesError(state.left, state.leftCount);
  try {
    const now = await lstat(at(parent, name));
    if (now.dev === expect.dev && now.ino === expect.ino) {
      await rmdir(at(parent, name));
      state.removed++;
    }
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
  return { removed: state.removed };
}

function leave(state: RemoveState, rel: string): void {
  if (state.left.length < LEFT_NAMED) state.left.push(rel);
  state.leftCount++;
}

/**
 * Makes a directory root's and 0700 (by descriptor); returns how to give it back its owner and mode
 * (those it had before an earlier, crashed removal locked it, when the verification knows them).
 */
async function lockDir(dir: DirRef, verified: VerifiedSet): Promise<() => Promise<void>> {
  const st = await dir.handle.stat();
  const before = verified.ownerBefore(st.ino) ?? { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 };
  await dir.handle.chown(process.geteuid?.() ?? 0, process.getegid?.() ?? 0);
  await dir.handle.chmod(0o700);
  return async () => {
    await dir.handle.chown(before.uid, before.gid);
    await dir.handle.chmod(before.mode);
  };
}

/**
 * Sorts one listing of `dir` into subdirectories to empty and other entries to unlink. Without a
 * verified set, the listing's types (d_type) do it and only directories need an lstat (for their
 * identity and device): anything else is unlinked by name, which never follows a symlink and cannot
 * remove a directory (if it became one meanwhile, the next round sees it). With one, every entry
 * is lstat-ed and an entry it does not hold is left (in `kept`) and reported.
 */
async function sortListing(
  ctx: WalkContext,
  dir: DirRef,
  rel: string,
  listing: readonly { name: Buffer; dir: boolean }[],
  state: RemoveState,
  kept: Set<string>,
): Promise<{ subdirs: EntryInfo[]; others: string[] }> {
  const subdirs: EntryInfo[] = [];
  const others: string[] = [];
  const verified = state.verified;
  await forEachLimited(ctx, verified ? listing : listing.filter((e) => e.dir), async (e) => {
    const name = relFromBuffer(e.name);
    try {
      const st = ctx.syncStat ? lstatSync(atListed(dir, name)) : await lstat(atListed(dir, name));
      const info = infoFrom(st, joinRel(rel, name), name);
      if (info.type === 'dir' && info.dev !== dir.dev) subdirs.push(info); // refused just below
      else if (verified && !verified.has(info)) {
        kept.add(name);
        leave(state, info.rel);
      } else if (info.type === 'dir') subdirs.push(info);
      else if (verified) others.push(name);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw error;
    }
  });
  if (!verified) for (const e of listing) if (!e.dir) others.push(relFromBuffer(e.name));
  return { subdirs, others };
}

/** Empties `dir`; false when entries were left in it (see RemoveOptions.verified). */
async function emptyDir(
  ctx: WalkContext,
  dir: DirRef,
  rel: string,
  root: { dev: number; mount: number | undefined },
  state: RemoveState,
  onProgress: RemoveOptions['onProgress'],
  maxRounds: number,
): Promise<boolean> {
  if (onProgress) await onProgress({ removed: state.removed, rel, phase: 'enter' });
  const restore = state.verified ? await lockDir(dir, state.verified) : undefined;
  /** Names left in this directory: never removed, not listed again. */
  const kept = new Set<string>();
  let failed = false;
  try {
    for (let round = 0; ; round++) {
      if (ctx.stopped) return false;
      let listing: { name: Buffer; dir: boolean }[];
      try {
        listing = (await readdir(dir.self, { encoding: 'buffer', withFileTypes: true })).map((d) => ({ name: d.name, dir: d.isDirectory() }));
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') return true;
        throw error;
      }
      if (kept.size > 0) listing = listing.filter((e) => !kept.has(relFromBuffer(e.name)));
      if (listing.length === 0) return kept.size === 0;
      // Held until its entries are handled (any error ends the whole removal).
      const held = listing.length;
      ctx.held += held;
      if (round >= maxRounds) throw new TreeChangedError(rel, `${dir.path} keeps changing while being removed; gave up after ${maxRounds} rounds`);
      const { subdirs, others } = await sortListing(ctx, dir, rel, listing, state, kept);
      if (onProgress) await onProgress({ removed: state.removed, rel, phase: 'listed' });
      const crossing = subdirs.find((i) => i.dev !== root.dev);
      if (crossing) throw new CrossDeviceError(crossing.rel, `${dir.path}/${displayPath(crossing.name)}`);
      await unlinkAll(ctx, dir, rel, others, state);
      ctx.held -= held;
      if (ctx.stopped) return false;
      subdirs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      await fanOut(ctx, subdirs, async (info) => {
        let child: DirRef;
        try {
          child = await openListed(dir, info, root.mount);
        } catch (error) {
          if (error instanceof TreeChangedError) return; // replaced or gone: next round
          throw error;
        }
        let emptied: boolean;
        try {
          emptied = await emptyDir(ctx, child, info.rel, root, state, onProgress, maxRounds);
        } finally {
          await child.close();
        }
        if (ctx.stopped) return;
        if (!emptied) {
          kept.add(info.name);
          return;
        }
        try {
          await rmdir(atListed(dir, info.name));
          state.removed++;
        } catch (error) {
          // Gone, refilled, or replaced by a non-directory: the next round sees it.
          const code = errnoCode(error);
          if (code !== 'ENOENT' && code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'ENOTDIR') throw error;
        }
      });
      if (ctx.stopped) return false;
    }
  } catch (error) {
    failed = true;
    throw error;
  } finally {
    // A directory that stays (entries left in it, or the removal stopped) gets its owner and mode back.
    if (restore && (kept.size > 0 || failed || ctx.stopped)) await restore().catch(() => undefined);
  }
}

/** Unlinks `names` in `dir`, counting what went. */
async function unlinkAll(ctx: WalkContext, dir: DirRef, rel: string, names: readonly string[], state: RemoveState): Promise<void> {
  const unlinkOne = (name: string, error: unknown): void => {
    if (error === undefined) {
      state.removed++;
      return;
    }
    const code = errnoCode(error);
    // A mount point (a file bind-mounted here): refused, nothing across it removed.
    if (code === 'EBUSY') throw new CrossDeviceError(joinRel(rel, name), `${dir.path}/${displayPath(name)}`);
    // Gone, or now a directory (EISDIR, or EPERM on some systems): the next round sees it.
    if (code !== 'ENOENT' && code !== 'EISDIR' && code !== 'EPERM') throw error;
  };
  if (ctx.syncStat) {
    for (const [i, name] of names.entries()) {
      if (i > 0 && i % SYNC_CHUNK === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      let failure: unknown;
      try {
        unlinkSync(atListed(dir, name));
      } catch (error) {
        failure = error;
      }
      unlinkOne(name, failure);
    }
    return;
  }
  await forEachLimited(ctx, names, async (name) => {
    let failure: unknown;
    try {
      await unlink(atListed(dir, name));
    } catch (error) {
      failure = error;
    }
    unlinkOne(name, failure);
  });
}

// ---------------------------------------------------------------------------------------------
// Copying single entries and metadata

function tempName(): string {
  return `.zfs-dynamic-creator.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
}

/** Opens `name` in `dir` with O_PATH|O_NOFOLLOW: a handle on exactly that inode, whatever it is. */
async function openPath(dir: DirRef, name: string): Promise<FileHandle> {
  return open(at(dir, name), O_PATH | constants.O_NOFOLLOW);
}

/** Sets owner, then mode (not for symlinks), then times of an O_PATH handle's inode. */
async function applyMetadata(handle: FileHandle, type: EntryType, info: EntryInfo): Promise<void> {
  const self = `/proc/self/fd/${handle.fd}`;
  await chown(self, info.uid, info.gid);
  if (type !== 'symlink') await chmod(self, info.mode);
  await utimes(self, info.atimeExactMs / 1000, info.mtimeExactMs / 1000);
}

/**
 * Sets owner, mode and times of `name` in `dir` to info's, through an O_PATH descriptor (never
 * following a symlink; a symlink's own owner and times are set). The entry must be of info's type.
 * Returns the entry's identity.
 */
export async function setMetadata(dir: DirRef, name: string, info: EntryInfo): Promise<Identity> {
  const handle = await openPath(dir, name);
  try {
    const st = await handle.stat();
    const type = typeOf(st);
    if (type !== info.type) throw new TreeChangedError(info.rel, `${dir.path}/${displayPath(name)} is a ${type}, expected a ${info.type}`);
    await applyMetadata(handle, type, info);
    return { dev: st.dev, ino: st.ino };
  } finally {
    await handle.close();
  }
}

export interface CopyOptions {
  /** Called with the bytes copied so far for regular files (after the copy). */
  onBytes?: (bytes: number) => void;
  /**
   * Compare-and-copy: the destination entry as it was when the copy was decided (null: there was
   * none). Right before the destination is replaced (or made, or its metadata set) it is lstat-ed
   * again; anything else there now is a DestinationChangedError, and nothing is replaced.
   */
  replaces?: EntryInfo | null;
}

/** The destination of a compare-and-copy is no longer what was judged: not copied (judge again). */
export class DestinationChangedError extends TreeChangedError {
  override name = 'DestinationChangedError';
}

/** Throws DestinationChangedError unless `name` in `dir` is still `expected` (null: still absent). */
async function checkReplaced(dir: DirRef, name: string, expected: EntryInfo | null | undefined, rel: string): Promise<void> {
  if (expected === undefined) return;
  let now: Stats | undefined;
  try {
    now = await lstat(at(dir, name));
  } catch (error) {
    if (errnoCode(error) !== 'ENOENT') throw error;
  }
  const unchanged =
    expected === null
      ? now === undefined
      : now !== undefined && now.dev === expected.dev && now.ino === expected.ino && typeOf(now) === expected.type && now.ctimeMs === expected.ctimeExactMs && now.mtimeMs === expected.mtimeExactMs && now.size === expected.size;
  if (!unchanged) throw new DestinationChangedError(rel, `${dir.path}/${displayPath(name)} changed after the copy was decided; not replaced`);
}

/**
 * Copies one entry from `src` (name `srcName`, described by `info` from a walk of src) to `dst`
 * as `dstName`, never reading through a symlink in src nor writing through one in dst:
 *
 * - file: opened O_NOFOLLOW and checked against info's dev/ino (TreeChangedError otherwise); copied
 *   (copy_file_range through fs.copyFile, block cloning where the filesystem does it) into a new
 *   temporary name made with O_CREAT|O_EXCL|O_NOFOLLOW, owned by info's owner before any byte is
 *   written, then mode and times set and renamed over `dstName`.
 * - dir: made if missing (an existing directory gets metadata only). Set its metadata again after
 *   filling it (setMetadata), since adding entries changes its times.
 * - symlink: made under a temporary name, owner and times set, renamed over `dstName`.
 * - fifo, socket, devices: UnsupportedEntryError (the caller decides).
 *
 * Files and directories get the source's extended attributes and POSIX ACLs too (util/xattr.ts).
 */
export async function copyEntry(src: DirRef, srcName: string, dst: DirRef, dstName: string, info: EntryInfo, opts?: CopyOptions): Promise<{ bytes: number }> {
  checkName(dstName);
  switch (info.type) {
    case 'file':
      return copyFileEntry(src, srcName, dst, dstName, info, opts);
    case 'dir': {
      await checkReplaced(dst, dstName, opts?.replaces, info.rel);
      const made = await copyDirEntry(dst, dstName, info, opts?.replaces);
      try {
        await copyDirXattrs(src, srcName, made, info);
      } finally {
        await made.close();
      }
      return { bytes: 0 };
    }
    case 'symlink':
      await copySymlinkEntry(src, srcName, dst, dstName, info, opts?.replaces);
      return { bytes: 0 };
    default:
      throw new UnsupportedEntryError(info.rel, info.type);
  }
}

/** Node's whole-millisecond view of a time in ns (what stat's mtimeMs gives, floored, as the comparisons use it). */
function wholeMs(ns: bigint): number {
  const sec = ns / 1_000_000_000n;
  return Math.floor(Number(sec) * 1e3 + Number(ns - sec * 1_000_000_000n) / 1e6);
}

/**
 * The seconds to give utimes() so that the copy's time is the source's to the microsecond and,
 * always, in the same whole millisecond as Node reports the source's (the catch-up and the
 * verification compare whole milliseconds). Node 20's libuv turns the double into a timespec and
 * keeps microseconds only (Node 22 and later keep the rest, so there the copy is about 0.5 µs
 * later than its source), and a double near 1.8e9 s is exact to about 240 ns only: `x / 1000` of a
 * time on a millisecond boundary (as the kernel's coarse clock makes them, and as OpenZFS keeps
 * them to the nanosecond) lands just below it, so the copy would show the millisecond before and
 * every later pass would see the source as changed again. Hence 0.5 µs into the microsecond, and
 * for a time within a double's rounding of its millisecond's end, the middle of that millisecond.
 */
export function stampSeconds(ns: bigint): number {
  if (ns < 0n) return Number(ns) / 1e9;
  const sec = ns / 1_000_000_000n;
  const us = (ns - sec * 1_000_000_000n) / 1_000n;
  const want = wholeMs(ns);
  if (wholeMs(sec * 1_000_000_000n + us * 1_000n) === want) return Number(sec) + (Number(us) * 1000 + 500) / 1e9;
  const ms = BigInt(want);
  const msec = ms / 1000n;
  return Number(msec) + Number(ms - msec * 1000n) / 1e3 + 0.0005;
}

async function copyFileEntry(src: DirRef, srcName: string, dst: DirRef, dstName: string, info: EntryInfo, opts?: CopyOptions): Promise<{ bytes: number }> {
  let input: FileHandle;
  try {
    // O_NONBLOCK: a fifo swapped in does not block the open (and is refused just below).
    input = await open(at(src, srcName), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (error) {
    const code = errnoCode(error);
    if (code === 'ELOOP' || code === 'ENOENT' || code === 'ENXIO') {
      throw new TreeChangedError(info.rel, `${src.path}/${displayPath(srcName)} changed before it could be copied`);
    }
    throw error;
  }
  try {
    const st = await input.stat({ bigint: true });
    if (!st.isFile() || Number(st.dev) !== info.dev || Number(st.ino) !== info.ino) {
      throw new TreeChangedError(info.rel, `${src.path}/${displayPath(srcName)} is no longer the file that was listed`);
    }
    const tmp = tempName();
    const output = await open(at(dst, tmp), constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    let renamed = false;
    try {
      // The owner first: a root-owned file never carries the source's setuid bits (fs.copyFile
      // sets the source's mode before copying).
      await output.chown(info.uid, info.gid);
      // A file with holes (fewer blocks than its length) keeps them; others by copy_file_range.
      if (st.blocks * 512n < st.size) await copySparse(input, output);
      else await copyFile(`/proc/self/fd/${input.fd}`, `/proc/self/fd/${output.fd}`);
      const written = await output.stat();
      await output.chown(info.uid, info.gid);
      await output.chmod(info.mode);
      await copyXattrs(input.fd, output.fd);
      // The times the source had before it was read (a change during the copy makes it newer).
      await output.utimes(stampSeconds(st.atimeNs), stampSeconds(st.mtimeNs));
      await checkReplaced(dst, dstName, opts?.replaces, info.rel);
      await rename(at(dst, tmp), at(dst, dstName));
      renamed = true;
      opts?.onBytes?.(written.size);
      return { bytes: written.size };
    } finally {
      await output.close();
      if (!renamed) await unlink(at(dst, tmp)).catch(() => undefined);
    }
  } finally {
    await input.close();
  }
}

/** Reads of the sparse copy, and the size of a hole it can leave (a block of zeros is not written). */
const SPARSE_CHUNK = 1 << 20;
const SPARSE_BLOCK = 4096;
const ZEROS = Buffer.alloc(SPARSE_BLOCK);

/**
 * Copies `input` to `output` (both at offset 0, output empty) without writing blocks of zeros:
 * they are left as holes, and the length is set at the end. Returns the bytes copied (the length).
 */
export async function copySparse(input: FileHandle, output: FileHandle): Promise<number> {
  const buffer = Buffer.allocUnsafe(SPARSE_CHUNK);
  let position = 0;
  for (;;) {
    const { bytesRead } = await input.read(buffer, 0, SPARSE_CHUNK, position);
    if (bytesRead === 0) break;
    // Each run of blocks that are not all zeros is written in one call, at its place.
    let start = -1;
    for (let at = 0; at < bytesRead + SPARSE_BLOCK; at += SPARSE_BLOCK) {
      const end = Math.min(at + SPARSE_BLOCK, bytesRead);
      const zero = at >= bytesRead || buffer.subarray(at, end).equals(ZEROS.subarray(0, end - at));
      if (!zero && start < 0) start = at;
      if (zero && start >= 0) {
        await output.write(buffer, start, Math.min(at, bytesRead) - start, position + start);
        start = -1;
      }
    }
    position += bytesRead;
  }
  await output.truncate(position);
  return position;
}

/**
 * Makes (or updates) directory `dstName` with info's metadata, through one O_PATH descriptor that
 * is returned (the caller closes it). The descriptor must be what was judged: the directory just
 * made (root's, 0700), or with `replaces` the entry judged (its device and inode); with
 * `replaces` null it must be new. So nothing renamed in meanwhile gets info's owner or ACLs.
 */
async function copyDirEntry(dst: DirRef, dstName: string, info: EntryInfo, replaces?: EntryInfo | null): Promise<FileHandle> {
  let made = true;
  try {
    await mkdir(at(dst, dstName), 0o700);
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw error;
    if (replaces === null) throw new DestinationChangedError(info.rel, `${dst.path}/${displayPath(dstName)} was made by someone else meanwhile; left as it is`);
    made = false;
  }
  const handle = await openPath(dst, dstName);
  try {
    const st = await handle.stat();
    if (!st.isDirectory()) throw new TreeChangedError(info.rel, `${dst.path}/${displayPath(dstName)} exists and is a ${typeOf(st)}, not a directory`);
    const ours = st.uid === (process.geteuid?.() ?? 0) && (st.mode & 0o7777) === 0o700;
    const judged = replaces ? st.dev === replaces.dev && st.ino === replaces.ino : replaces === undefined;
    if (made ? !ours : !judged) throw new DestinationChangedError(info.rel, `${dst.path}/${displayPath(dstName)} was replaced meanwhile; left as it is`);
    await applyMetadata(handle, 'dir', info);
    return handle;
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** The extended attributes of directory `srcName` (checked to be info's) onto the directory open as `to`. */
async function copyDirXattrs(src: DirRef, srcName: string, to: FileHandle, info: EntryInfo): Promise<void> {
  const from = await openPath(src, srcName);
  try {
    const a = await from.stat();
    if (!a.isDirectory() || a.dev !== info.dev || a.ino !== info.ino) {
      throw new TreeChangedError(info.rel, `${src.path}/${displayPath(srcName)} changed while being copied`);
    }
    await copyXattrs(from.fd, to.fd);
  } finally {
    await from.close();
  }
}

async function copySymlinkEntry(src: DirRef, srcName: string, dst: DirRef, dstName: string, info: EntryInfo, replaces?: EntryInfo | null): Promise<void> {
  let target: Buffer;
  try {
    const st = await lstat(at(src, srcName));
    if (!st.isSymbolicLink() || st.dev !== info.dev || st.ino !== info.ino) throw new Error('changed');
    target = await readlink(at(src, srcName), { encoding: 'buffer' });
  } catch {
    throw new TreeChangedError(info.rel, `${src.path}/${displayPath(srcName)} is no longer the symlink that was listed`);
  }
  const tmp = tempName();
  await symlink(target, at(dst, tmp));
  let renamed = false;
  try {
    const handle = await openPath(dst, tmp);
    try {
      const st = await handle.stat();
      if (!st.isSymbolicLink()) throw new TreeChangedError(info.rel, `${dst.path}/${tmp} was replaced while being made`);
      await applyMetadata(handle, 'symlink', info);
    } finally {
      await handle.close();
    }
    await checkReplaced(dst, dstName, replaces, info.rel);
    await rename(at(dst, tmp), at(dst, dstName));
    renamed = true;
  } finally {
    if (!renamed) await unlink(at(dst, tmp)).catch(() => undefined);
  }
}

/**
 * Opens (or makes) each component of `rel` below `root`, with O_NOFOLLOW, and returns the last
 * one (the caller closes it). A missing component is made only when `metaOf(relOfComponent)`
 * gives its metadata (owner, mode, times are then set); otherwise the ENOENT is thrown.
 */
export async function ensureDir(root: DirRef, rel: string, metaOf?: (rel: string) => EntryInfo | undefined): Promise<DirRef> {
  let current = root;
  let sofar = '';
  try {
    for (const name of splitRel(rel)) {
      sofar = joinRel(sofar, name);
      let next: DirRef;
      try {
        next = await openChild(current, name);
      } catch (error) {
        const meta = errnoCode(error) === 'ENOENT' ? metaOf?.(sofar) : undefined;
        if (meta === undefined) throw error;
        if (meta.type !== 'dir') throw new TypeError(`metadata for ${displayPath(sofar)} is not a directory's`);
        await (await copyDirEntry(current, name, meta, null)).close();
        next = await openChild(current, name);
      }
      if (current !== root) await current.close();
      current = next;
    }
    if (current === root) return await reopen(root);
    return current;
  } catch (error) {
    if (current !== root) await current.close();
    throw error;
  }
}
