/** Issue 19, roots: gone-root notes, which stateDir serves a root, and the .zfs control directory. */
import { chown, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RootClaimedError, RootGoneError } from '../../src/core/errors.js';
import { ensureHoldingDir } from '../../src/core/places.js';
import { assertRootPresent, claimRoot, clearGone, goneNoted, goneRoots, noteGone, readRootClaim } from '../../src/core/roots.js';
import { isZfsControlDir } from '../../src/util/safefs/index.js';

let tmp: string;
let rootdir: string;

beforeEach(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'zdc-roots-')));
  rootdir = join(tmp, 'root');
  await mkdir(rootdir);
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

describe('a root that is gone', () => {
  it('a missing rootdir, or a file in its place, is a RootGoneError naming it', async () => {
    await expect(assertRootPresent(join(tmp, 'nope'))).rejects.toThrow(new RootGoneError(`"${join(tmp, 'nope')}" does not exist`));
    await writeFile(join(tmp, 'file'), '');
    await expect(assertRootPresent(join(tmp, 'file'))).rejects.toBeInstanceOf(RootGoneError);
    await expect(assertRootPresent(rootdir)).resolves.toBeUndefined();
  });

  it('is noted once (the first run to meet it is told so), listed, and forgotten when it is back', async () => {
    const state = join(tmp, 'state');
    const note = { rootdir: '/mnt/old', rootfs: 'old', reason: 'ZFS filesystem old does not exist' };
    expect(await goneNoted(state, note.rootdir)).toBe(false);
    expect(await noteGone(state, note)).toBe(true);
    expect(await noteGone(state, note)).toBe(false);
    // Another reason (its mountpoint went too): still not news.
    expect(await noteGone(state, { ...note, reason: '"/mnt/old" does not exist' })).toBe(false);
    expect(await goneRoots(state)).toMatchObject([{ rootdir: '/mnt/old', rootfs: 'old', reason: '"/mnt/old" does not exist' }]);
    await clearGone(state, note.rootdir);
    expect(await goneRoots(state)).toEqual([]);
    expect(await noteGone(state, note)).toBe(true);
  });
});

describe('one stateDir per root', () => {
  it('the first stateDir is recorded; another is refused naming both; a dry run records nothing', async () => {
    const a = join(tmp, 'a');
    const b = join(tmp, 'b');
    await ensureHoldingDir(rootdir, true);
    await claimRoot(rootdir, a, true);
    expect(await readRootClaim(rootdir)).toBeUndefined();
    await claimRoot(rootdir, a, false);
    expect(await readRootClaim(rootdir)).toMatchObject({ stateDir: a });
    await claimRoot(rootdir, a, false);
    const refused = claimRoot(rootdir, b, false);
    await expect(refused).rejects.toBeInstanceOf(RootClaimedError);
    await expect(refused).rejects.toThrow(`records stateDir "${a}"`);
    await expect(claimRoot(rootdir, b, true)).rejects.toThrow(`this run uses "${b}"`);
    // The administrator says the stateDir moved: the record goes, the new one is taken.
    await rm(join(rootdir, '.zfs-dynamic-creator', 'owner'));
    await claimRoot(rootdir, b, false);
    expect(JSON.parse(await readFile(join(rootdir, '.zfs-dynamic-creator', 'owner'), 'utf8'))).toMatchObject({ stateDir: b });
  });

  it('a record in a holding directory that is not ours is never read', async () => {
    await mkdir(join(rootdir, '.zfs-dynamic-creator'), { mode: 0o700 });
    await writeFile(join(rootdir, '.zfs-dynamic-creator', 'owner'), JSON.stringify({ stateDir: '/elsewhere', host: 'x' }));
    await chown(join(rootdir, '.zfs-dynamic-creator'), 65534, 65534);
    expect(await readRootClaim(rootdir)).toBeUndefined();
  });
});

describe('the .zfs control directory', () => {
  it('is known by its inode number, not by its name alone', () => {
    expect(isZfsControlDir({ name: '.zfs', type: 'dir', ino: 0xffffffffffff })).toBe(true);
    expect(isZfsControlDir({ name: '.zfs', type: 'dir', ino: 1234 })).toBe(false);
    expect(isZfsControlDir({ name: 'zfs', type: 'dir', ino: 0xffffffffffff })).toBe(false);
    expect(isZfsControlDir({ name: '.zfs', type: 'file', ino: 0xffffffffffff })).toBe(false);
  });
});
