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
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { appendFile, mkdir, open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { fsyncDir, isErrno } from '../../src/index.js';
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
  return [key, metaFrom(f)];
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

function nameOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
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

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function write(out: WriteStream, text: string): Promise<void> {
  if (!out.write(text)) await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => reject(error);
    out.once('error', onError);
    out.once('drain', () => {
      out.off('error', onError);
      resolve();
    });
  });
}

/**
 * Writes a manifest block by block (one directory's entries at a time, as a walk lists them), to a
 * temporary file that commit() fsyncs and renames into place. Each directory must be given once.
 */
export class ManifestWriter {
  private readonly out: WriteStream;
  private failed: Error | undefined;
  private constructor(
    readonly path: string,
    private readonly tmp: string,
  ) {
    this.out = createWriteStream(tmp, { mode: 0o600 });
    this.out.on('error', (error) => (this.failed ??= error));
  }

  static async create(path: string): Promise<ManifestWriter> {
    await mkdir(join(path, '..'), { recursive: true, mode: 0o700 });
    const w = new ManifestWriter(path, `${path}.${process.pid}.tmp`);
    await write(w.out, '{"v":2}\n');
    return w;
  }

  /** The entries of directory `parent` (null: the root entry itself, named ''). */
  async block(parent: string | null, entries: readonly (readonly [name: string, meta: Meta])[]): Promise<void> {
    if (this.failed) throw this.failed;
    if (entries.length === 0) return;
    let text = `${JSON.stringify({ d: parent })}\n`;
    for (const [name, meta] of entries) text += `${line(name, meta)}\n`;
    await write(this.out, text);
  }

  /** Finishes the file and puts it in place, durably. */
  async commit(): Promise<void> {
    this.out.end();
    await finished(this.out);
    if (this.failed) throw this.failed;
    await fsyncFile(this.tmp);
    await rename(this.tmp, this.path);
    await fsyncDir(join(this.path, '..'));
  }

  /** Drops the temporary file. */
  async abort(): Promise<void> {
    this.out.destroy();
    await finished(this.out).catch(() => undefined);
    await unlink(this.tmp).catch(() => undefined);
  }
}

/** `length` bytes at `position` (a manifest is never shortened while it is read). */
async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  for (let done = 0; done < length; ) {
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
  private readonly cache = new Map<string, { loading: Promise<Map<string, Meta>>; entries?: Map<string, Meta> }>();

  private constructor(
    readonly path: string,
    private readonly hash: (text: string) => number,
  ) {}

  /** The manifest, or undefined when there is none (a job of an older version, or a lost state directory). */
  static async open(path: string, opts?: { hash?: (text: string) => number }): Promise<Manifest | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    }
    const m = new Manifest(path, opts?.hash ?? ((text) => hash53(text)));
    try {
      await m.scan(handle);
    } finally {
      await handle.close();
    }
    return m;
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

  /** Reads the file once: where each block is, and the changes. Entry lines are not parsed. */
  private async scan(handle: FileHandle): Promise<void> {
    let version = 0;
    let pending: Buffer = Buffer.alloc(0);
    let position = 0;
    let current = -1;
    const buffer = Buffer.allocUnsafe(CHUNK);
    const onLine = (bytes: Buffer, offset: number): void => {
      if (bytes.length === 0) return;
      const text = bytes.toString('utf8');
      if (version === 0) {
        // The first line: a version-2 header, or a version-1 entry (an older version's file).
        if (bytes[0] === 0x7b && (JSON.parse(text) as { v?: number }).v === 2) {
          version = 2;
          return;
        }
        version = 1;
      }
      if (version === 1) {
        const [rel, meta] = parseEntry(text);
        this.changes.set(rel, meta);
        return;
      }
      if (bytes[0] === 0x5b) {
        // An entry line of the current block.
        if (current < 0) throw new Error(`${this.path}: an entry outside any directory block`);
        this.lengths[current] = offset + bytes.length + 1 - this.offsets[current]!;
        return;
      }
      const record = JSON.parse(text) as { d?: string | null; c?: [string, ...Fields] };
      if (record.c !== undefined) {
        const [rel, ...f] = record.c;
        this.changes.set(rel, metaFrom(f));
        current = -1;
      } else if (record.d !== undefined) {
        this.addBlock(blockKey(record.d), offset, offset + bytes.length + 1);
        current = this.blocks - 1;
      } else {
        throw new Error(`${this.path}: an unknown line`);
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
    // A last line without its newline is a write cut short (appends are fsynced whole): ignored.
    this.order = Uint32Array.from({ length: this.blocks }, (_, i) => i).sort((a, b) => this.hashes[a]! - this.hashes[b]!);
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
          const [name, meta] = parseEntry(text);
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
      const loading = this.loadBlock(key);
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
    await appendFile(this.path, changes.map(([rel, meta]) => `{"c":${line(rel, meta)}}\n`).join(''), { mode: 0o600 });
    await fsyncFile(this.path);
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
          const [name, meta] = parseEntry(text);
          const rel = parent === null ? '' : parent === '' ? name : `${parent}/${name}`;
          if (!this.changes.has(rel)) yield [rel, meta];
        }
      }
    } finally {
      await handle.close();
    }
    yield* this.changes;
  }
}

export async function removeManifest(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
  }
}
