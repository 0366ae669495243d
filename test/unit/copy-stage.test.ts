/**
 * The parallel copy's settings: `blockCloning: off` never calls copy_file_range (fs.copyFile,
 * counted here through a wrapped node:fs/promises) and still copies every file exactly; `auto` and
 * `always` use it; the options that choose the copy are validated.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { verifyTree } from '../helpers/verify.js';

const counted = vi.hoisted(() => ({ copyFile: 0 }));
vi.mock('node:fs/promises', async (original) => {
  const fs = await original<typeof import('node:fs/promises')>();
  return {
    ...fs,
    copyFile: async (...args: Parameters<typeof fs.copyFile>) => {
      counted.copyFile++;
      return fs.copyFile(...args);
    },
  };
});

const { cloneTree } = await import('../../plugins/rsync/clone.js');
const { options } = await import('../../plugins/rsync/options.js');

let work: string;
let src: string;
let dst: string;

beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'zdc-copy-stage-'));
  src = join(work, 'src');
  dst = join(work, 'dst');
  await mkdir(join(src, 'a'), { recursive: true });
  await mkdir(dst);
  // sizes around the userspace copy's 1 MiB buffer, and an empty file
  const sizes = [0, 1, 4096, 65537, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 7];
  for (const [i, size] of sizes.entries()) await writeFile(join(src, i % 2 ? 'a' : '', `f${i}`), Buffer.alloc(size, i + 1));
  counted.copyFile = 0;
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('the parallel copy by setting', () => {
  it('userspace (blockCloning: off): no copy_file_range, every file exact, and rsync then sends no data', async () => {
    const r = await cloneTree(src, dst, new AbortController().signal, { concurrency: 3, data: 'userspace' });
    expect(r).toMatchObject({ files: 8, skipped: 0 });
    expect(counted.copyFile).toBe(0);
    const sent = await execa('rsync', ['-aHAX', '--numeric-ids', '--itemize-changes', '--', `${src}/`, `${dst}/`]);
    expect(sent.stdout.split('\n').filter((l) => l.startsWith('>f'))).toEqual([]);
    expect((await verifyTree(src, dst, { content: true })).differences).toEqual([]);
  });

  it('kernel (auto, always): copy_file_range for every file', async () => {
    const r = await cloneTree(src, dst, new AbortController().signal, { concurrency: 16 });
    expect(r).toMatchObject({ files: 8, skipped: 0 });
    expect(counted.copyFile).toBe(8);
  });

  it('concurrency below 1 is taken as 1, and a userspace copy that is stopped stops', async () => {
    const ac = new AbortController();
    ac.abort(new Error('stopped for the test'));
    await expect(cloneTree(src, dst, ac.signal, { concurrency: 0, data: 'userspace' })).rejects.toThrow('stopped for the test');
    const r = await cloneTree(src, dst, new AbortController().signal, { concurrency: 0, data: 'userspace' });
    expect(r.files).toBe(8);
  });
});

describe("the rsync plugin's copy options", () => {
  it('defaults: the parallel copy on, 16 files at once, block cloning where it works', () => {
    expect(options.parse({})).toMatchObject({ parallelCopy: true, copyConcurrency: 16, blockCloning: 'auto' });
  });

  it('refuses a concurrency that is not a whole number from 1 to 64, and a parallelCopy that is not a boolean', () => {
    for (const bad of [0, -1, 1.5, 65, '16']) expect(options.safeParse({ copyConcurrency: bad }).success).toBe(false);
    for (const good of [1, 4, 64]) expect(options.parse({ copyConcurrency: good }).copyConcurrency).toBe(good);
    expect(options.safeParse({ parallelCopy: 'no' }).success).toBe(false);
    expect(options.parse({ parallelCopy: false }).parallelCopy).toBe(false);
    expect(options.safeParse({ blockCloning: 'yes' }).success).toBe(false);
  });
});
