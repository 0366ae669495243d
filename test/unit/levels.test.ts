/**
 * Layout levels (src/core/levels.ts, not wired yet): a run below the root is mounted only where
 * every directory between the root and it is one nobody but root or a trusted owner can rename
 * in or replace, on the root's own filesystem, reached without following a link.
 */
import { chmod, chown, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertLevels, levelProblem, runComponents } from '../../src/core/levels.js';

const ROOT = 0;
const USER = 4242;
const none = new Set<number>();

describe('levelProblem', () => {
  const level = (uid: number, mode: number, dev = 1) => ({ uid, mode: 0o40000 | mode, dev });
  it('accepts a root-owned level not writable by others, and a sticky root-owned one', () => {
    expect(levelProblem('/r/a', level(ROOT, 0o755), 1, ROOT, none)).toBeUndefined();
    expect(levelProblem('/r/a', level(ROOT, 0o1777), 1, ROOT, none)).toBeUndefined();
  });
  it("refuses a plain user's level, unless the user is trusted", () => {
    expect(levelProblem('/r/a', level(USER, 0o755), 1, ROOT, none)).toMatch(/owned by uid 4242, neither root nor a trusted owner/);
    expect(levelProblem('/r/a', level(USER, 0o755), 1, ROOT, new Set([USER]))).toBeUndefined();
  });
  it('refuses a level writable by group or others unless sticky and root-owned', () => {
    expect(levelProblem('/r/a', level(ROOT, 0o775), 1, ROOT, none)).toMatch(/writable by group/);
    expect(levelProblem('/r/a', level(ROOT, 0o777), 1, ROOT, none)).toMatch(/writable by group and others/);
    expect(levelProblem('/r/a', level(USER, 0o1777), 1, ROOT, new Set([USER]))).toMatch(/not sticky and root's/);
  });
  it('refuses a level on another filesystem (a move aside would cross it)', () => {
    expect(levelProblem('/r/a', level(ROOT, 0o755, 2), 1, ROOT, none)).toMatch(/another filesystem's mountpoint/);
  });
});

describe('runComponents', () => {
  it('takes exactly depth components, none empty, . or ..', () => {
    expect(runComponents('exp/sample/run', 3)).toEqual(['exp', 'sample', 'run']);
    for (const bad of ['exp/sample', 'exp/sample/run/x', 'exp//run', 'exp/../run', './a/b', 'a/b/'])
      expect(runComponents(bad, 3)).toBeUndefined();
  });
});

describe('assertLevels', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'levels-'));
    await chmod(root, 0o755);
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('passes root-owned levels, refuses a user-owned one, a link and a world-writable one', async () => {
    await mkdir(join(root, 'exp/sample/run'), { recursive: true, mode: 0o755 });
    await expect(assertLevels(root, 'exp/sample/run', 3, none)).resolves.toBeUndefined();

    await mkdir(join(root, 'mine/sample/run'), { recursive: true, mode: 0o755 });
    await chown(join(root, 'mine/sample'), USER, USER);
    await expect(assertLevels(root, 'mine/sample/run', 3, none)).rejects.toThrow(/mine\/sample" is owned by uid 4242/);
    await expect(assertLevels(root, 'mine/sample/run', 3, new Set([USER]))).resolves.toBeUndefined();

    await symlink(join(root, 'exp'), join(root, 'link'));
    await expect(assertLevels(root, 'link/sample/run', 3, none)).rejects.toThrow(/link" is a symbolic link/);

    await mkdir(join(root, 'open/sample/run'), { recursive: true });
    await chmod(join(root, 'open'), 0o777);
    await expect(assertLevels(root, 'open/sample/run', 3, none)).rejects.toThrow(/writable by group and others/);
    await chmod(join(root, 'open'), 0o1777);
    await expect(assertLevels(root, 'open/sample/run', 3, none)).resolves.toBeUndefined();

    await expect(assertLevels(root, 'exp/sample', 3, none)).rejects.toThrow(/not a run at depth 3/);
  });
});
