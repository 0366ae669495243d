/**
 * Issue 19 items 1-3, the parts that are plain logic or plain files: which root modes the tool
 * accepts, the holding directory made through descriptors, and the mountpoint at the original's
 * path (root's, empty, never a link). On real files as root; "nobody" is uid 65534. The races
 * themselves, with a real unprivileged attacker on a real pool: test/integration/siege-mount.test.ts.
 */
import { chmod, chown, lstat, mkdir, mkdtemp, rename, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureHoldingDir, rootModeProblem } from '../../src/core/places.js';
import { checkMountpoint, makeMountpoint, mountpointProblem, removeOwnMountpoint } from '../../plugins/zfs/mountpoint.js';

const NOBODY = 65534;
let base: string;
let counter = 0;

beforeAll(async () => {
  expect(process.geteuid?.(), 'these tests run as root').toBe(0);
  base = await mkdtemp(join(tmpdir(), 'zdc-mountpoint-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

async function root(mode: number, uid = 0): Promise<string> {
  const dir = join(base, `root${counter++}`);
  await mkdir(dir);
  await chown(dir, uid, uid);
  await chmod(dir, mode);
  return dir;
}

describe('rootModeProblem: the root modes the tool accepts', () => {
  it('accepts a root nobody else can rename in: 0755, 1777, 3775, 1770', () => {
    for (const mode of [0o755, 0o700, 0o1777, 0o3775, 0o1770, 0o1755])
      expect(rootModeProblem('/r', { uid: 0, mode: 0o40000 | mode }, 0)).toBeUndefined();
  });

  it('refuses one writable by group or others without the sticky bit, naming chmod +t', () => {
    expect(rootModeProblem('/r', { uid: 0, mode: 0o2775 }, 0)).toBe(
      'the root "/r" is writable by group without the sticky bit (mode 2775): they could rename what the tool makes in it; run chmod +t "/r" (everyone who can make folders there still can), or chmod go-w',
    );
    expect(rootModeProblem('/r', { uid: 0, mode: 0o777 }, 0)).toMatch(/writable by group and others without the sticky bit \(mode 0777\)/);
    expect(rootModeProblem('/r', { uid: 0, mode: 0o757 }, 0)).toMatch(/writable by others without/);
  });

  it('refuses one owned by another user (its owner can rename anything in it, sticky or not)', () => {
    expect(rootModeProblem('/r', { uid: NOBODY, mode: 0o1777 }, 0)).toMatch(/is owned by uid 65534, not 0: .*chown 0 "\/r"/);
  });
});

describe('ensureHoldingDir: made and fixed through descriptors', () => {
  it('makes it root-owned 0700 in a sticky root, whatever the umask', async () => {
    const r = await root(0o1777);
    const old = process.umask(0o000);
    try {
      await ensureHoldingDir(r, true);
    } finally {
      process.umask(old);
    }
    const s = await lstat(join(r, '.zfs-dynamic-creator'));
    expect([s.isDirectory(), s.uid, s.mode & 0o7777]).toEqual([true, 0, 0o700]);
  });

  it('refuses a symbolic link planted at its name and changes nothing where it points', async () => {
    const r = await root(0o1777);
    const victim = join(base, `victim${counter++}`);
    await mkdir(victim);
    await chown(victim, NOBODY, NOBODY);
    await chmod(victim, 0o755);
    await symlink(victim, join(r, '.zfs-dynamic-creator'));
    await expect(ensureHoldingDir(r, true)).rejects.toThrow(/holding directory, is a symbolic link; somebody else made it/);
    const s = await stat(victim);
    expect([s.uid, s.mode & 0o7777]).toEqual([NOBODY, 0o755]);
  });

  it('refuses a directory another user made there first', async () => {
    const r = await root(0o1777);
    await mkdir(join(r, '.zfs-dynamic-creator'));
    await chown(join(r, '.zfs-dynamic-creator'), NOBODY, NOBODY);
    await expect(ensureHoldingDir(r, true)).rejects.toThrow(/is owned by uid 65534, not 0/);
  });

  it('refuses a 2775 or 0777 root before making anything in it, and says chmod +t', async () => {
    for (const mode of [0o2775, 0o777]) {
      const r = await root(mode);
      await expect(ensureHoldingDir(r, true)).rejects.toThrow(/without the sticky bit .*chmod \+t/);
      await expect(lstat(join(r, '.zfs-dynamic-creator'))).rejects.toThrow(/ENOENT/);
    }
  });

  it('accepts a sticky group root (3775)', async () => {
    const r = await root(0o3775);
    await ensureHoldingDir(r, true);
    expect((await lstat(join(r, '.zfs-dynamic-creator'))).mode & 0o7777).toBe(0o700);
  });
});

describe('the mountpoint at the original path', () => {
  it('mountpointProblem: only an empty directory of root that nobody else can write into', () => {
    expect(mountpointProblem({ uid: 0, mode: 0o40700, entries: 0 }, 0)).toBeUndefined();
    expect(mountpointProblem({ uid: 0, mode: 0o40755, entries: 0 }, 0)).toBeUndefined();
    expect(mountpointProblem({ uid: 0, mode: 0o40700, entries: 1 }, 0)).toEqual({ kind: 'not-empty', why: 'it is not empty' });
    expect(mountpointProblem({ uid: NOBODY, mode: 0o40700, entries: 0 }, 0)?.kind).toBe('foreign');
    expect(mountpointProblem({ uid: 0, mode: 0o40777, entries: 0 }, 0)?.kind).toBe('foreign');
  });

  it('makes a root-owned empty directory and checks it is the same one right before the mount', async () => {
    const r = await root(0o1777);
    const path = join(r, 'name');
    const place = await makeMountpoint(r, path);
    if (!('identity' in place)) throw new Error(place.problem.why);
    const s = await lstat(path);
    expect([s.isDirectory(), s.uid, s.mode & 0o7777]).toEqual([true, 0, 0o700]);
    expect(await checkMountpoint(r, path, place.identity)).toBeUndefined();
    // Filled (only root could), or replaced: not mounted on.
    await writeFile(join(path, 'x'), 'x');
    expect((await checkMountpoint(r, path, place.identity))?.kind).toBe('not-empty');
    await mkdir(join(r, 'other'), { mode: 0o700 });
    await rm(path, { recursive: true });
    await rename(join(r, 'other'), path);
    expect(await checkMountpoint(r, path, place.identity)).toEqual({ kind: 'foreign', why: 'it is not the directory the tool made' });
  });

  it('a symbolic link or a user directory at the path is never taken, and never removed', async () => {
    const r = await root(0o1777);
    const target = join(base, `target${counter++}`);
    await mkdir(target);
    await symlink(target, join(r, 'link'));
    const place = await makeMountpoint(r, join(r, 'link'));
    expect(place).toEqual({ problem: { kind: 'foreign', why: 'it is a symbolic link or not a directory' } });
    expect(await removeOwnMountpoint(join(r, 'link'))).toBe(false);
    expect((await lstat(join(r, 'link'))).isSymbolicLink()).toBe(true);
    await mkdir(join(r, 'users'));
    await chown(join(r, 'users'), NOBODY, NOBODY);
    expect(await makeMountpoint(r, join(r, 'users'))).toMatchObject({ problem: { kind: 'foreign' } });
    expect(await removeOwnMountpoint(join(r, 'users'))).toBe(false);
    expect(await removeOwnMountpoint(join(r, 'absent'))).toBe(true);
  });

  it('refuses to make it in a root others can rename in', async () => {
    const r = await root(0o777);
    await expect(makeMountpoint(r, join(r, 'name'))).rejects.toThrow(/without the sticky bit/);
    await expect(lstat(join(r, 'name'))).rejects.toThrow(/ENOENT/);
  });
});
