import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Manifest, ManifestWriter, hash53, manifestPath, removeManifest } from '../../plugins/rsync/manifest.js';
import type { Meta } from '../../plugins/rsync/threeway.js';

const file = (size: number, over: Partial<Meta> = {}): Meta => ({
  type: 'file',
  mode: 0o644,
  uid: 1000,
  gid: 1000,
  size,
  mtimeMs: 1_700_000_000_123,
  rdev: 0,
  ...over,
});
const dir = (over: Partial<Meta> = {}): Meta => ({
  type: 'dir',
  mode: 0o755,
  uid: 1000,
  gid: 1000,
  size: 0,
  mtimeMs: 1_700_000_000_000,
  rdev: 0,
  ...over,
});

/** Names as raw bytes in latin1 strings: newline, quote, backslash, non-UTF-8, a name like a header. */
const odd = ['a\nb', 'q"\\', Buffer.from([0xff, 0xfe, 0x41]).toString('latin1'), '{"d":null}', '[x]', 'D'];

let work: string;
let path: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'zdc-manifest-'));
  path = manifestPath(join(work, 'state'), 'job1');
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function sample(): Promise<Map<string, Meta>> {
  const all = new Map<string, Meta>();
  const w = await ManifestWriter.create(path);
  await w.block(null, [['', dir({ mode: 0o750 })]]);
  all.set('', { ...dir({ mode: 0o750 }) });
  const top: [string, Meta][] = [];
  for (const [i, name] of ['d1', 'd2', ...odd].entries()) top.push([name, name.startsWith('d') && name.length === 2 ? dir() : file(i)]);
  await w.block('', top);
  for (const [name, meta] of top) all.set(name, meta);
  for (const d of ['d1', 'd2']) {
    const entries: [string, Meta][] = [];
    for (let i = 0; i < 500; i++) entries.push([`f${i}`, file(i, { uid: d === 'd1' ? 1 : 2 })]);
    entries.push(['link', { type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtimeMs: 5, rdev: 0, target: odd[2]! }]);
    await w.block(d, entries);
    for (const [name, meta] of entries) all.set(`${d}/${name}`, meta);
  }
  await w.commit();
  return all;
}

async function lookup(m: Manifest, rel: string): Promise<Meta | undefined> {
  return await m.get(rel);
}

describe('the on-disk manifest', () => {
  it('gives back every entry as written, one directory block at a time, and nothing else', async () => {
    const all = await sample();
    const m = (await Manifest.open(path))!;
    for (const [rel, meta] of all) expect(await lookup(m, rel), rel).toEqual(meta);
    expect(await lookup(m, 'd1/nope')).toBeUndefined();
    expect(await lookup(m, 'nodir/f1')).toBeUndefined();
    expect(await lookup(m, 'd1/f1/below')).toBeUndefined();
    // A directory already read answers without waiting.
    await lookup(m, 'd2/f3');
    expect(m.get('d2/f4')).not.toBeInstanceOf(Promise);
    const seen = new Map<string, Meta>();
    for await (const [rel, meta] of m.entries()) {
      expect(seen.has(rel), rel).toBe(false);
      seen.set(rel, meta);
    }
    expect(seen).toEqual(all);
  });

  it('records changes durably: the last version of a path wins, after reopening too', async () => {
    const all = await sample();
    const m = (await Manifest.open(path))!;
    await m.record([
      ['d1/f7', file(70)],
      ['d1/new', file(1)],
      ['d1/f7', file(71)],
    ]);
    expect(await lookup(m, 'd1/f7')).toEqual(file(71));
    const again = (await Manifest.open(path))!;
    expect(await lookup(again, 'd1/f7')).toEqual(file(71));
    expect(await lookup(again, 'd1/new')).toEqual(file(1));
    expect(await lookup(again, 'd1/f8')).toEqual(all.get('d1/f8'));
    const rels = new Map<string, Meta>();
    for await (const [rel, meta] of again.entries()) rels.set(rel, meta);
    expect(rels.size).toBe(all.size + 1);
    expect(rels.get('d1/f7')).toEqual(file(71));
  });

  it('tells directories apart whose keys collide', async () => {
    const all = await sample();
    const m = (await Manifest.open(path, { hash: () => 42 }))!;
    for (const rel of ['', 'd1', 'd1/f3', 'd2/f3', 'd2/link', odd[0]!, 'd1/x']) expect(await lookup(m, rel), rel).toEqual(all.get(rel));
  });

  it('reads a version-1 manifest (one line a path, the last wins) of an older version', async () => {
    const lines = [
      ['', 'dir', 0o755, 0, 0, 0, 1, 0, null],
      ['a', 'file', 0o644, 1, 1, 5, 2, 0, null],
      ['a/b', 'symlink', 0o777, 1, 1, 0, 3, 0, 'tgt'],
      ['a', 'file', 0o600, 1, 1, 6, 4, 0, null],
    ];
    await writeFile(join(work, 'v1.jsonl'), lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
    const m = (await Manifest.open(join(work, 'v1.jsonl')))!;
    expect(await lookup(m, 'a')).toEqual({ type: 'file', mode: 0o600, uid: 1, gid: 1, size: 6, mtimeMs: 4, rdev: 0 });
    expect(await lookup(m, 'a/b')).toEqual({ type: 'symlink', mode: 0o777, uid: 1, gid: 1, size: 0, mtimeMs: 3, rdev: 0, target: 'tgt' });
    expect(await lookup(m, 'c')).toBeUndefined();
  });

  it('is missing when never written, and its temporary file goes with an abort', async () => {
    expect(await Manifest.open(path)).toBeUndefined();
    const w = await ManifestWriter.create(path);
    await w.block('', [['x', file(1)]]);
    await w.abort();
    expect(await Manifest.open(path)).toBeUndefined();
    expect(await readdir(join(path, '..'))).toEqual([]);
    await removeManifest(path);
  });

  it('keys directories by a 53-bit hash', () => {
    expect(hash53('a')).not.toBe(hash53('b'));
    expect(Number.isSafeInteger(hash53('some/dir'))).toBe(true);
  });
});
