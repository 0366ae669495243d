/**
 * The baseline of a conversion: for every entry of the copy as it became live, what the catch-up
 * compares against (see threeway.ts). Kept in <stateDir>/manifests/<job id>.jsonl so that a job
 * finished by `recover` after a crash knows it too. Paths are lossless 'latin1' strings of the raw
 * name bytes.
 *
 * The manifest lives on disk, not in memory: a tree of millions of entries costs the process a
 * few bytes per directory (an index of where each directory's block starts), and the catch-up
 * reads one directory's block at a time, as the walk reaches that directory.
 *
 * Format (version 2), one JSON value a line:
 *   {"v":2}                                  the first line
 *   {"d":"<parent rel>"}  ({"d":null} for the root)
 *   ["<name>",type,mode,uid,gid,size,mtimeMs,rdev,target]   the entries of that directory,
 *                                            one block a directory (the root's block holds '')
 *   {"c":["<rel>",type,mode,...]}            a later change (a catch-up copied or adopted it):
 *                                            appended, fsynced; the last line for a path wins
 * The file is written to a temporary name, fsynced and renamed into place. A version-1 file (an
 * older version's: one ["<rel>",type,...] line an entry, no header) is still read, into memory.
 *
 * Only the appended change lines can be torn (a kill or a full disk between two chunks of one
 * append): a last line that is such a torn change is dropped when read and cut off before the
 * next append. Any other line that does not read is damage (DamagedStateError).
 */
import { mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { nameOf, parentOf, DamagedStateError, fsyncDir, isErrno } from '../../src/index.js';
import type { Kind, Meta } from './threeway.js';

type Fields = [type: Kind, mode: number, uid: number, gid: number, size: number, mtimeMs: number, rdev: number, target: string | null];

function fieldsOf(m: Meta): Fields {
  return [m.type, m.mode & 0o7777, m.uid, m.gid, m.type === 'file' ? m.size : 0, Math.floor(m.mtimeMs), m.rdev ?? 0, m.target ?? null];
}

function metaFrom(f: Fields): Meta {
  const [type, mode, uid, gid, size, mtimeMs, rdev, target] = f;
  return { type, mode, uid, gid, size, mtimeMs, rdev, ...(target === null ? {} : { target }) };
}

/** A JSON line of one entry: [key, ...fields]. */
function line(key: string, m: Meta): string {
  return JSON.stringify([key, ...fieldsOf(m)]);
}

function parseEntry(text: string): [string, Meta] {
  const [key, ...f] = JSON.parse(text) as [string, ...Fields];
  if (typeof key !== 'string' || f.length !== 8) throw new Error('not an entry');
  return [key, metaFrom(f)];
}

/** parseEntry for a line of a block: a line that does not read is damage, named with its file. */
function blockEntry(path: string, text: string): [string, Meta] {
  try {
    return parseEntry(text);
  } catch {
    throw new DamagedStateError(path, `an entry line does not read (${JSON.stringify(text.slice(0, 40))})`);
  }
}

/** Whether a dropped last line may be a change line cut short (or the zeros a crash leaves). */
function tornChange(bytes: Buffer): boolean {
  const text = bytes.toString('latin1');
  return /^\0*$/.test(text) || (text.length >= 5 ? text.startsWith('{"c":') : '{"c":'.startsWith(text));
}

/** 53 bits of a string (cyrb53): the key of a directory in the index. Collisions are checked. */
export function hash53(text: string, seed = 0): number {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** The key a block's parent is indexed by: the parent rel, or a name no rel can be for the root. */
function blockKey(parent: string | null): string {
  return parent ?? '/';
}

export function manifestPath(stateDir: string, jobId: string): string {
  return join(stateDir, 'manifests', `${jobId}.jsonl`);
}

/** Writes all of `data` at `position` (a write may be short). */
async function writeAt(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  for (let done = 0; done < data.length;) {
    const { bytesWritten } = await handle.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * A file written by many concurrent steps through one queue: one write at a time, in order (what
 * was queued meanwhile goes out together); each caller waits for its own text to be written, which
 * is the back-pressure. The first error fails that write and every later one, the same error.
 */
class SerialWriter {
  private queue: { text: string; resolve: () => void; reject: (error: Error) => void }[] = [];
  private busy = false;
  private failed: Error | undefined;

  constructor(
    private readonly handle: FileHandle,
    private position = 0,
  ) {}

  write(text: string): Promise<void> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.queue.push({ text, resolve, reject });
      if (!this.busy) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.busy = true;
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0);
      try {
        if (this.failed) throw this.failed;
        const data = Buffer.from(batch.map((b) => b.text).join(''), 'utf8');
        await writeAt(this.handle, data, this.position);
        this.position += data.length;
        for (const b of batch) b.resolve();
      } catch (error) {
        this.failed ??= error instanceof Error ? error : new Error(String(error));
        for (const b of batch) b.reject(this.failed);
      }
    }
    this.busy = false;
  }
}

/**
 * Writes a manifest block by block (one directory's entries at a time, as a walk lists them, from
 * concurrent steps), to a temporary file that commit() fsyncs and renames into place. Each
 * directory must be given once.
 */
export class ManifestWriter {
  private readonly out: SerialWriter;
  private constructor(
    readonly path: string,
    private readonly tmp: string,
    private readonly handle: FileHandle,
  ) {
    this.out = new SerialWriter(handle);
  }

  static async create(path: string): Promise<ManifestWriter> {
    await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
    const tmp = `${path}.${process.pid}.tmp`;
    const w = new ManifestWriter(path, tmp, await open(tmp, 'w', 0o600));
    await w.out.write('{"v":2}\n');
    return w;
  }

  /** The entries of directory `parent` (null: the root entry itself, named ''). */
  async block(parent: string | null, entries: readonly (readonly [name: string, meta: Meta])[]): Promise<void> {
    if (entries.length === 0) return;
    let text = `${JSON.stringify({ d: parent })}\n`;
    for (const [name, meta] of entries) text += `${line(name, meta)}\n`;
    await this.out.write(text);
  }

  /** Finishes the file and puts it in place, durably. */
  async commit(): Promise<void> {
    // Queued last: written once everything before it is.
    await this.out.write('');
    await this.handle.sync();
    await this.handle.close();
    await rename(this.tmp, this.path);
    await fsyncDir(join(this.path, '..'));
  }

  /** Drops the temporary file. */
  async abort(): Promise<void> {
    await this.out.write('').catch(() => undefined);
    await this.handle.close().catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
  }
}

/** `length` bytes at `position` (a manifest is never shortened while it is read). */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  for (let done = 0; done < length;) {
    const { bytesRead } = await handle.read(buffer, done, length - done, position + done);
    if (bytesRead === 0) throw new Error('the manifest is shorter than its index says');
    done += bytesRead;
  }
  return buffer;
}

/** Blocks of parsed directories kept in memory at once (a walk visits about concurrency directories at a time). */
const CACHED_BLOCKS = 64;
const CHUNK = 1 << 20;

/**
 * A manifest on disk, read one directory's block at a time. Changes recorded since it was written
 * are kept in memory (they are as many as the entries the catch-ups copied or adopted).
 */
export class Manifest {
  /** Per block: hash of its key, offset of its header line, of its first entry line, length of its entry lines. */
  private hashes = new Float64Array(64);
  private headers = new Float64Array(64);
  private offsets = new Float64Array(64);
  private lengths = new Float64Array(64);
  private blocks = 0;
  /** Block numbers sorted by hash. */
  private order = new Uint32Array(0);
  private readonly changes = new Map<string, Meta>();
  /** Where the last line that read ends: appends go here. */
  private end = 0;
  /** The file ended in a torn change line (dropped; cut off before the next append). */
  torn = false;
  private readonly cache = new Map<string, { loading: Promise<Map<string, Meta>>; entries?: Map<string, Meta> }>();

  /** What damage found becomes (onDamage's answer, asked once). */
  private damage: Promise<Error> | undefined;

  private constructor(
    readonly path: string,
    private readonly hash: (text: string) => number,
    private readonly onDamage: ((error: DamagedStateError) => Promise<Error>) | undefined,
  ) {}

  /**
   * The manifest, or undefined when there is none (a job of an older version, or a lost state
   * directory). Damage found, now or when a block is read, is thrown as onDamage makes it (once).
   */
  static async open(
    path: string,
    opts?: { hash?: (text: string) => number; onDamage?: (error: DamagedStateError) => Promise<Error> },
  ): Promise<Manifest | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    }
    const m = new Manifest(path, opts?.hash ?? ((text) => hash53(text)), opts?.onDamage);
    try {
      await m.scan(handle).catch((e: unknown) => m.damaged(e));
    } finally {
      await handle.close();
    }
    return m;
  }

  /** Rethrows `error`, damage as onDamage makes it. */
  private async damaged(error: unknown): Promise<never> {
    if (!(error instanceof DamagedStateError) || this.onDamage === undefined) throw error;
    this.damage ??= this.onDamage(error);
    throw await this.damage;
  }

  private addBlock(key: string, header: number, offset: number): void {
    if (this.blocks === this.hashes.length) {
      const grow = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.hashes = grow(this.hashes);
      this.headers = grow(this.headers);
      this.offsets = grow(this.offsets);
      this.lengths = grow(this.lengths);
    }
    this.hashes[this.blocks] = this.hash(key);
    this.headers[this.blocks] = header;
    this.offsets[this.blocks] = offset;
    this.lengths[this.blocks] = 0;
    this.blocks++;
  }

  /**
   * Reads the file once: where each block is, and the changes. Entry lines are not parsed. A last
   * line that is a torn change is dropped (`torn`); any other line that does not read is damage.
   */
  private async scan(handle: FileHandle): Promise<void> {
    /** The file's version (0: not known yet), and the block entry lines belong to (-1: none). */
    const state = { version: 0, current: -1 };
    let pending: Buffer = Buffer.alloc(0);
    let position = 0;
    let lineNo = 0;
    /** The first line that did not read: damage unless it is the last. */
    let bad: { line: number; bytes: Buffer; why: string } | undefined;
    const buffer = Buffer.allocUnsafe(CHUNK);
    const onLine = (bytes: Buffer, offset: number): void => {
      lineNo++;
      if (bad !== undefined) throw new DamagedStateError(this.path, `line ${bad.line} does not read (${bad.why}) and more follow it`);
      try {
        this.readLine(bytes, offset, state);
        this.end = offset + bytes.length + 1;
      } catch (error) {
        if (error instanceof DamagedStateError) throw error;
        bad = { line: lineNo, bytes: Buffer.from(bytes), why: error instanceof Error ? error.message : String(error) };
      }
    };
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, CHUNK, position);
      if (bytesRead === 0) break;
      const data = pending.length > 0 ? Buffer.concat([pending, buffer.subarray(0, bytesRead)]) : buffer.subarray(0, bytesRead);
      const base = position - pending.length;
      let start = 0;
      for (let nl = data.indexOf(0x0a, start); nl >= 0; nl = data.indexOf(0x0a, start)) {
        onLine(data.subarray(start, nl), base + start);
        start = nl + 1;
      }
      // A copy: `buffer` is reused for the next read.
      pending = Buffer.from(data.subarray(start));
      position += bytesRead;
    }
    // The tail after the last line that read: a torn change (dropped, and cut off before the next
    // append), or damage.
    const tail = bad?.bytes ?? pending;
    if (bad !== undefined && pending.length > 0)
      throw new DamagedStateError(this.path, `line ${bad.line} does not read (${bad.why}) and more follow it`);
    if (tail.length > 0 && state.version !== 1 && !tornChange(tail))
      throw new DamagedStateError(
        this.path,
        `its last line does not read and is not a change cut short (${JSON.stringify(tail.toString('latin1').slice(0, 40))})`,
      );
    this.torn = position > this.end;
    this.order = Uint32Array.from({ length: this.blocks }, (_, i) => i).sort((a, b) => this.hashes[a]! - this.hashes[b]!);
  }

  /** One line of the file (without its newline) at `offset`; throws when it does not read. */
  private readLine(bytes: Buffer, offset: number, state: { version: number; current: number }): void {
    if (bytes.length === 0) return;
    const text = bytes.toString('utf8');
    if (state.version === 0) {
      // The first line: a version-2 header, or a version-1 entry (an older version's file).
      state.version = bytes[0] === 0x7b && (JSON.parse(text) as { v?: number }).v === 2 ? 2 : 1;
      if (state.version === 2) return;
    }
    // A version-1 entry (a later version's change lines, appended to it, read as in version 2).
    if (state.version === 1 && bytes[0] !== 0x7b) {
      const [rel, meta] = parseEntry(text);
      this.changes.set(rel, meta);
      return;
    }
    if (bytes[0] === 0x5b) {
      // An entry line of the current block.
      if (state.current < 0) throw new DamagedStateError(this.path, 'an entry outside any directory block');
      this.lengths[state.current] = offset + bytes.length + 1 - this.offsets[state.current]!;
      return;
    }
    const record = JSON.parse(text) as { d?: string | null; c?: [string, ...Fields] };
    if (record.c !== undefined) {
      const [rel, meta] = parseEntry(JSON.stringify(record.c));
      this.changes.set(rel, meta);
      state.current = -1;
    } else if (record.d !== undefined) {
      this.addBlock(blockKey(record.d), offset, offset + bytes.length + 1);
      state.current = this.blocks - 1;
    } else {
      throw new Error('an unknown line');
    }
  }

  /** Blocks (possibly more than one: a hash collision) that may hold `key`'s entries. */
  private candidates(key: string): number[] {
    const h = this.hash(key);
    let lo = 0;
    let hi = this.blocks;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.hashes[this.order[mid]!]! < h) lo = mid + 1;
      else hi = mid;
    }
    const out: number[] = [];
    for (let i = lo; i < this.blocks && this.hashes[this.order[i]!] === h; i++) out.push(this.order[i]!);
    return out;
  }

  /** The parent rel a block's header names (null: the root's block). */
  private async blockParent(handle: FileHandle, b: number): Promise<string | null> {
    const header = await readAt(handle, this.headers[b]!, this.offsets[b]! - 1 - this.headers[b]!);
    return (JSON.parse(header.toString('utf8')) as { d: string | null }).d;
  }

  private async loadBlock(key: string): Promise<Map<string, Meta>> {
    const entries = new Map<string, Meta>();
    const candidates = this.candidates(key);
    if (candidates.length === 0) return entries;
    const handle = await open(this.path, 'r');
    try {
      for (const b of candidates) {
        // The header line says whose block it is (the hash may collide).
        const parent = await this.blockParent(handle, b);
        if (blockKey(parent) !== key) continue;
        const body = await readAt(handle, this.offsets[b]!, this.lengths[b]!);
        for (const text of body.toString('utf8').split('\n')) {
          if (text.length === 0) continue;
          const [name, meta] = blockEntry(this.path, text);
          entries.set(name, meta);
        }
      }
    } finally {
      await handle.close();
    }
    return entries;
  }

  /** A directory's block: loaded (then `entries` is set) or loading. */
  private block(key: string): { loading: Promise<Map<string, Meta>>; entries?: Map<string, Meta> } {
    let b = this.cache.get(key);
    if (b === undefined) {
      const loading = this.loadBlock(key).catch((e: unknown) => this.damaged(e));
      const slot: { loading: Promise<Map<string, Meta>>; entries?: Map<string, Meta> } = { loading };
      loading.then(
        (entries) => void (slot.entries = entries),
        () => void (this.cache.get(key) === slot && this.cache.delete(key)),
      );
      b = slot;
      if (this.cache.size >= CACHED_BLOCKS) this.cache.delete(this.cache.keys().next().value!);
    } else {
      this.cache.delete(key);
    }
    this.cache.set(key, b);
    return b;
  }

  /**
   * The baseline of `rel`: synchronously when it is known without reading (a recorded change, or
   * a directory block already read), else a promise.
   */
  get(rel: string): Meta | undefined | Promise<Meta | undefined> {
    const changed = this.changes.get(rel);
    if (changed !== undefined) return changed;
    if (this.blocks === 0) return undefined;
    const block = this.block(blockKey(rel === '' ? null : parentOf(rel)));
    const name = nameOf(rel);
    return block.entries !== undefined ? block.entries.get(name) : block.loading.then((entries) => entries.get(name));
  }

  /** Records changes to the baseline (entries the catch-up copied or adopted), durably. */
  async record(changes: readonly (readonly [string, Meta])[]): Promise<void> {
    if (changes.length === 0) return;
    const data = Buffer.from(changes.map(([rel, meta]) => `{"c":${line(rel, meta)}}\n`).join(''), 'utf8');
    const handle = await open(this.path, 'r+');
    try {
      // After the last line that read: a torn tail (a crash's, or this process's own write cut
      // short by a full disk) is cut off, so that no line ever continues it.
      const { size } = await handle.stat();
      if (size < this.end) throw new DamagedStateError(this.path, `it became shorter (${size} bytes) than when it was read (${this.end})`);
      if (size > this.end) await handle.truncate(this.end);
      await writeAt(handle, data, this.end);
      await handle.sync();
    } finally {
      await handle.close();
    }
    this.end += data.length;
    this.torn = false;
    for (const [rel, meta] of changes) this.changes.set(rel, meta);
  }

  /** Every entry's baseline (the last recorded version of each), in no particular order, read block by block. */
  async *entries(): AsyncGenerator<[string, Meta]> {
    const handle = await open(this.path, 'r');
    try {
      for (let b = 0; b < this.blocks; b++) {
        const parent = await this.blockParent(handle, b);
        const body = await readAt(handle, this.offsets[b]!, this.lengths[b]!);
        for (const text of body.toString('utf8').split('\n')) {
          if (text.length === 0) continue;
          const [name, meta] = blockEntry(this.path, text);
          const rel = parent === null ? '' : parent === '' ? name : `${parent}/${name}`;
          if (!this.changes.has(rel)) yield [rel, meta];
        }
      }
    } catch (error) {
      await this.damaged(error);
    } finally {
      await handle.close();
    }
    yield* this.changes;
  }
}

/** Where a damaged manifest is set aside (kept until the job ends, for a look). */
export function damagedPath(path: string): string {
  return `${path}.damaged`;
}

/** Moves a damaged manifest aside: the job goes on without it (every difference a conflict). */
export async function setAsideManifest(path: string): Promise<string> {
  await rename(path, damagedPath(path));
  await fsyncDir(dirname(path));
  return damagedPath(path);
}

/** Removes a job's manifest, a damaged one set aside, and temporary files a killed writer left. */
export async function removeManifest(path: string): Promise<void> {
  const prefix = `${basename(path)}.`;
  let names: string[];
  try {
    names = (await readdir(dirname(path))).filter((n) => n.startsWith(prefix) && (n.endsWith('.tmp') || n === basename(damagedPath(path))));
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return;
    throw error;
  }
  for (const file of [path, ...names.map((n) => join(dirname(path), n))]) {
    try {
      await unlink(file);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
    }
  }
}
