/** plugins/rsync/verify.ts on a temporary directory: what it must notice, and what it must accept. */
import { chmod, link, mkdir, mkdtemp, rm, symlink, truncate, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { verifyTree } from '../../plugins/rsync/verify.js';

let base: string;
let a: string;
let b: string;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'zdc-verify-'));
  a = join(base, 'a');
  b = join(base, 'b');
  await mkdir(join(a, 'sub', 'deeper'), { recursive: true });
  await writeFile(join(a, 'one'), 'first file');
  await writeFile(join(a, 'sub', 'two'), 'second file');
  await writeFile(join(a, 'sub', 'deeper', 'three'), 'x'.repeat(10_000));
  await link(join(a, 'one'), join(a, 'hard'));
  await symlink('sub/two', join(a, 'link'));
  await execa('cp', ['-a', `${a}/.`, b]);
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

const check = (content = false) => verifyTree(a, b, { content });

describe('verifyTree', () => {
  it('accepts an exact copy and counts it', async () => {
    const r = await check(true);
    expect(r.differences).toEqual([]);
    expect(r.entries).toBe(8);
    expect(r.bytes).toBe(10 + 11 + 10_000 + 10);
  });

  it('accepts extra entries in the copy (written there after the swap)', async () => {
    await writeFile(join(b, 'new in the dataset'), 'y');
    expect((await check()).differences).toEqual([]);
  });

  it('notices a missing file, directory and symlink', async () => {
    await unlink(join(b, 'sub', 'two'));
    await rm(join(b, 'sub', 'deeper'), { recursive: true });
    await unlink(join(b, 'link'));
    const d = (await check()).differences;
    expect(d).toContain('/sub/two: missing from the copy');
    expect(d).toContain('/sub/deeper: missing from the copy');
    expect(d).toContain('/link: missing from the copy');
  });

  it('notices a file that grew or shrank (an append caught only half)', async () => {
    await truncate(join(b, 'sub', 'deeper', 'three'), 5000);
    expect((await check()).differences).toEqual(['/sub/deeper/three: size 10000 vs 5000']);
  });

  it('notices a different mtime', async () => {
    await utimes(join(b, 'one'), new Date(0), new Date(0));
    expect((await check()).differences[0]).toMatch(/^\/one: mtime /);
  });

  it('notices same size and mtime but other content only when asked to compare content', async () => {
    const file = join(b, 'sub', 'two');
    await writeFile(file, 'SECOND FILE');
    const when = new Date('2024-01-02T03:04:05Z');
    await utimes(join(a, 'sub', 'two'), when, when);
    await utimes(file, when, when);
    expect((await check(false)).differences).toEqual([]);
    expect((await check(true)).differences).toEqual(['/sub/two: content differs']);
  });

  it('notices a mode, a type and a link target that differ', async () => {
    await chmod(join(b, 'sub'), 0o700);
    await unlink(join(b, 'link'));
    await symlink('elsewhere', join(b, 'link'));
    await rm(join(b, 'one'));
    await mkdir(join(b, 'one'));
    const d = (await check()).differences;
    expect(d).toContain('/one: is a file in the original, a directory in the copy');
    expect(d.some((x) => /^\/sub: mode 7\d\d vs 700$/.test(x))).toBe(true);
    expect(d).toContain('/link: link target "sub/two" vs "elsewhere"');
  });

  it('notices a hard link broken into two files', async () => {
    await rm(join(b, 'hard'));
    await writeFile(join(b, 'hard'), 'first file');
    const when = new Date('2024-01-02T03:04:05Z');
    for (const f of [join(a, 'one'), join(b, 'one'), join(b, 'hard')]) await utimes(f, when, when);
    expect((await check()).differences).toEqual(['/hard: hard link to an earlier file is a separate file in the copy']);
  });

  it('notices a missing copy root', async () => {
    await rm(b, { recursive: true });
    expect((await check()).differences).toEqual(['/: missing from the copy']);
  });

  it('stops after maxDifferences', async () => {
    for (let i = 0; i < 30; i++) await writeFile(join(a, `only-in-a-${i}`), 'z');
    const r = await verifyTree(a, b, { content: false, maxDifferences: 5 });
    expect(r.differences).toHaveLength(5);
  });
});
