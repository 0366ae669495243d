/**
 * Torn and damaged state files (issue 19 item 9): a job's copy manifest whose last change line a
 * crash cut short is read without it and cut back before the next append; damage anywhere else is
 * a DamagedStateError, turned once into what the caller says; a damaged journal record stops its
 * job once, set aside, and the next run goes on. Also: the manifest writer's one queue (issue 25).
 */
import { mkdir, mkdtemp, readFile, readdir, realpath, rm, truncate, writeFile, appendFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Manifest, ManifestWriter, damagedPath, manifestPath, removeManifest, setAsideManifest } from '../../plugins/rsync/manifest.js';
import type { Meta } from '../../plugins/rsync/threeway.js';
import { RootEngine } from '../../src/core/engine.js';
import { DamagedStateError } from '../../src/core/errors.js';
import { Journal, jobId } from '../../src/core/journal.js';
import { newRecord } from '../../src/core/job.js';

const file = (size: number): Meta => ({ type: 'file', mode: 0o644, uid: 1000, gid: 1000, size, mtimeMs: 1_700_000_000_123, rdev: 0 });
const dir = (): Meta => ({ type: 'dir', mode: 0o755, uid: 1000, gid: 1000, size: 0, mtimeMs: 1_700_000_000_000, rdev: 0 });

let work: string;
let path: string;
beforeEach(async () => {
  work = await realpath(await mkdtemp(join(tmpdir(), 'zdc-damage-')));
  path = manifestPath(join(work, 'state'), 'job1');
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

/** A manifest of '' and a/ (f0..f9), then two recorded changes. */
async function written(): Promise<void> {
  const w = await ManifestWriter.create(path);
  await w.block(null, [['', dir()]]);
  await w.block('', [['a', dir()]]);
  await w.block(
    'a',
    Array.from({ length: 10 }, (_, i) => [`f${i}`, file(i)] as const),
  );
  await w.commit();
  const m = (await Manifest.open(path))!;
  await m.record([['a/f1', file(100)]]);
  await m.record([['a/f2', file(200)]]);
}

describe('a torn manifest', () => {
  it('drops a change line a crash cut short, and cuts it off before the next append', async () => {
    await written();
    const { size } = await stat(path);
    await truncate(path, size - 7); // in the middle of the last line, as a kill would
    const m = (await Manifest.open(path))!;
    expect(m.torn).toBe(true);
    expect(await m.get('a/f2')).toEqual(file(2)); // the torn change is not there; the block's is
    expect(await m.get('a/f1')).toEqual(file(100));
    await m.record([['a/f3', file(300)]]);
    const again = (await Manifest.open(path))!;
    expect(again.torn).toBe(false);
    expect(await again.get('a/f3')).toEqual(file(300));
    expect(await again.get('a/f1')).toEqual(file(100));
    expect((await readFile(path, 'utf8')).endsWith('\n')).toBe(true);
    const seen = new Map<string, Meta>();
    for await (const [rel, meta] of again.entries()) seen.set(rel, meta);
    expect(seen.size).toBe(12);
  });

  it('drops a last change line that ends in its newline but does not read, and the zeros a power cut leaves', async () => {
    await written();
    await appendFile(path, '{"c":["a/f4",\n');
    expect((await Manifest.open(path))!.torn).toBe(true);
    await written();
    await appendFile(path, Buffer.alloc(4096));
    const m = (await Manifest.open(path))!;
    expect(m.torn).toBe(true);
    await m.record([['a/f5', file(5)]]);
    expect(await (await Manifest.open(path))!.get('a/f5')).toEqual(file(5));
  });

  it('cuts back its own append that a full disk cut short before the next one', async () => {
    await written();
    const m = (await Manifest.open(path))!;
    // What a write that failed half-way leaves: bytes after the last line the manifest knows.
    await appendFile(path, '{"c":["a/f6",0,');
    await m.record([['a/f7', file(7)]]);
    const again = (await Manifest.open(path))!;
    expect(again.torn).toBe(false);
    expect(await again.get('a/f7')).toEqual(file(7));
  });
});

describe("an older version's manifest (version 1)", () => {
  it('takes change lines appended by this version, and reads them back', async () => {
    await mkdir(join(work, 'state', 'manifests'), { recursive: true });
    await writeFile(
      path,
      `${JSON.stringify(['', 'dir', 0o755, 0, 0, 0, 1, 0, null])}\n${JSON.stringify(['a', 'file', 0o644, 1, 1, 5, 2, 0, null])}\n`,
    );
    await (await Manifest.open(path))!.record([['a', file(9)]]);
    await (await Manifest.open(path))!.record([['b', file(10)]]);
    const m = (await Manifest.open(path))!;
    expect(await m.get('a')).toEqual(file(9));
    expect(await m.get('b')).toEqual(file(10));
  });
});

describe('a damaged manifest', () => {
  it('is a DamagedStateError naming the file when a line in the middle does not read', async () => {
    await written();
    const text = await readFile(path, 'utf8');
    const lines = text.split('\n');
    lines.splice(3, 0, 'garbage');
    await writeFile(path, lines.join('\n'));
    const error = await Manifest.open(path).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DamagedStateError);
    expect((error as DamagedStateError).file).toBe(path);
    expect((error as DamagedStateError).message).toMatch(/line 4 does not read/);
  });

  it('is damage, not a torn change, when the last line is an entry or a header', async () => {
    const w = await ManifestWriter.create(path);
    await w.block(null, [['', dir()]]);
    await w.commit();
    await appendFile(path, '["x",');
    await expect(Manifest.open(path)).rejects.toBeInstanceOf(DamagedStateError);
  });

  it('turns damage found in a block, read later, into what onDamage says, once', async () => {
    await written();
    const text = await readFile(path, 'utf8');
    await writeFile(path, text.replace('["f3",', '["f3",,'));
    const asked: string[] = [];
    const m = (await Manifest.open(path, {
      onDamage: async (e) => {
        asked.push(e.file);
        return new Error(`said once: ${e.detail}`);
      },
    }))!;
    const all = await Promise.allSettled([m.get('a/f3'), m.get('a/f4')].map(async (p) => await p));
    expect(all.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((all[0] as PromiseRejectedResult).reason)).toMatch(/said once: an entry line does not read/);
    await expect(
      (async () => {
        for await (const _ of m.entries()) void _;
      })(),
    ).rejects.toThrow(/said once/);
    expect(asked).toEqual([path]);
  });

  it('is set aside whole, and removed with the job, with temporary files a killed writer left', async () => {
    await written();
    expect(await setAsideManifest(path)).toBe(damagedPath(path));
    expect(await Manifest.open(path)).toBeUndefined();
    await writeFile(`${path}.4242.tmp`, '{"v":2}\n');
    await writeFile(manifestPath(join(work, 'state'), 'job10'), 'another job');
    await removeManifest(path);
    expect(await readdir(join(work, 'state', 'manifests'))).toEqual(['job10.jsonl']);
  });
});

describe('the manifest writer', () => {
  it('takes thousands of concurrent blocks through one queue, in full and without a warning', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const w = await ManifestWriter.create(path);
      await w.block(null, [['', dir()]]);
      const big = Array.from({ length: 50 }, (_, i) => [`file-with-a-long-name-${i}`, file(i)] as const);
      await Promise.all(Array.from({ length: 1000 }, (_, d) => w.block(`d${d}`, big)));
      await w.commit();
      const m = (await Manifest.open(path))!;
      expect(await m.get('d999/file-with-a-long-name-49')).toEqual(file(49));
      expect(await m.get('d0/file-with-a-long-name-0')).toEqual(file(0));
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('reports a write error to every writer waiting, the same one, and leaves nothing behind on abort', async () => {
    const w = await ManifestWriter.create(path);
    // Closing the file under it: every later write fails with the same error.
    await (w as unknown as { handle: { close(): Promise<void> } }).handle.close();
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, d) => w.block(`d${d}`, [['f', file(1)]])));
    const reasons = new Set(results.map((r) => (r.status === 'rejected' ? r.reason : 'ok')));
    expect(reasons.size).toBe(1);
    expect([...reasons][0]).toBeInstanceOf(Error);
    await w.abort();
    expect(await readdir(join(work, 'state', 'manifests'))).toEqual([]);
  });
});

describe('a damaged journal record', () => {
  it('is a DamagedStateError; set aside under the lock, it is gone for the next read', async () => {
    const journal = new Journal(join(work, 'state'));
    await mkdir(journal.dir, { recursive: true });
    await writeFile(journal.file('abc'), '{"version":1,"id":"abc"');
    await expect(journal.read('abc')).rejects.toBeInstanceOf(DamagedStateError);
    const error = (await journal.read('abc', { setAside: true }).catch((e: unknown) => e)) as Error;
    expect(error.message).toContain(`${journal.file('abc')}.damaged`);
    expect(error.message.split('\n')).toHaveLength(1);
    expect(await journal.read('abc')).toBeUndefined();
    expect(await journal.list()).toEqual([]);
  });

  it('stops its job once with one line naming the file; the next run converts', async () => {
    const rootdir = join(work, 'root');
    const stateDir = join(work, 'state');
    await mkdir(join(rootdir, 'd'), { recursive: true });
    await mkdir(stateDir, { mode: 0o700, recursive: true });
    const make = (): RootEngine => new RootEngine({ rootfs: 'tank/root', rootdir, stateDir, dryRun: false, sinks: [] });
    const id = jobId(rootdir, 'd');
    const journal = new Journal(stateDir);
    await journal.write(newRecord({ rootfs: 'tank/root', rootdir } as Parameters<typeof newRecord>[0], id, 'd'));
    // Parses, but not as a record: a validation failure, not a syntax error.
    await writeFile(journal.file(id), JSON.stringify({ version: 1, id, name: 'd', rootdir, rootfs: 'tank/root', steps: 'x' }));
    const first = await make().handle('d');
    expect(first.kind).toBe('failed');
    expect(first.message).toContain(journal.file(id));
    expect(first.message.split('\n')).toHaveLength(1);
    const second = await make().handle('d');
    expect(second.kind).toBe('converted');
  });
});
