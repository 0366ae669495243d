/**
 * The compile cache (src/util/compile-cache.ts): used only in a directory no other user can
 * change, never an error. Node 20 has no compile cache, so Node's API is stood in for by a
 * recorder; the directories, owners and modes are real (the tests run as root).
 */
import { chmod, chown, lchown, mkdir, mkdtemp, rm, stat, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { changesNothing, startCompileCache, type CompileCacheApi } from '../../src/util/compile-cache.js';

const NOBODY = 65534;
let base: string;

beforeAll(async () => {
  expect(process.geteuid?.(), 'these tests run as root').toBe(0);
  base = await mkdtemp(join(tmpdir(), 'zdc-ccache-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});
const savedNodeCache = process.env.NODE_COMPILE_CACHE;
afterEach(() => {
  if (savedNodeCache === undefined) delete process.env.NODE_COMPILE_CACHE;
  else process.env.NODE_COMPILE_CACHE = savedNodeCache;
});

/** Node's enableCompileCache, recording where it was asked to cache. */
function recorder(status = 1): { api: CompileCacheApi; calls: (string | undefined)[] } {
  const calls: (string | undefined)[] = [];
  return {
    calls,
    api: {
      enableCompileCache: (directory?: string) => {
        calls.push(directory);
        return { status, ...(status === 0 ? { message: 'Cannot write' } : {}), ...(directory !== undefined ? { directory } : {}) };
      },
    },
  };
}

describe('the compile cache', () => {
  it('is not used where Node has none (Node 20), and nothing is created', async () => {
    const dir = join(base, 'none', 'compile');
    expect(startCompileCache(dir, {})).toEqual({ used: false, why: expect.stringMatching(/has no compile cache/) });
    await expect(stat(join(base, 'none'))).rejects.toThrow(/ENOENT/);
  });

  it('creates its directory 0700 and hands Node the real path', async () => {
    delete process.env.NODE_COMPILE_CACHE;
    const { api, calls } = recorder();
    const dir = join(base, 'fresh', 'compile');
    expect(startCompileCache(dir, api)).toEqual({ used: true, directory: dir });
    expect(calls).toEqual([dir]);
    expect((await stat(dir)).mode & 0o7777).toBe(0o700);
    // Through a root-owned symbolic link: Node is given the link's target.
    const link = join(base, 'link');
    await symlink(dir, link);
    const second = recorder();
    expect(startCompileCache(link, second.api)).toEqual({ used: true, directory: dir });
    expect(second.calls).toEqual([dir]);
  });

  it('refuses a directory another user could change, or one below such a directory, unused', async () => {
    delete process.env.NODE_COMPILE_CACHE;
    const open = join(base, 'open');
    await mkdir(open, { mode: 0o777 });
    await chmod(open, 0o777);
    const writable = recorder();
    expect(startCompileCache(join(open, 'compile'), writable.api)).toEqual({
      used: false,
      why: expect.stringMatching(/refused: its directory ".*open" is writable by group and others/),
    });
    expect(writable.calls).toEqual([]);
    // Refused before anything is made there.
    await expect(stat(join(open, 'compile'))).rejects.toThrow(/ENOENT/);

    const owned = join(base, 'owned');
    await mkdir(owned, { mode: 0o700 });
    await chown(owned, NOBODY, NOBODY);
    const byOther = recorder();
    expect(startCompileCache(owned, byOther.api)).toEqual({ used: false, why: expect.stringMatching(/is owned by uid 65534, not root/) });
    expect(byOther.calls).toEqual([]);

    // A symbolic link planted to lead into such a place is resolved first, then refused.
    const planted = join(base, 'planted');
    await symlink(owned, planted);
    const viaLink = recorder();
    expect(startCompileCache(planted, viaLink.api).used).toBe(false);
    expect(viaLink.calls).toEqual([]);

    // A link another user planted in a sticky directory, leading to a trusted place where nothing
    // exists yet: refused before anything is made through it.
    const sticky = join(base, 'sticky');
    await mkdir(sticky);
    await chmod(sticky, 0o1777);
    const lure = join(sticky, 'cache');
    await symlink(join(base, 'made-through-link'), lure);
    await lchown(lure, NOBODY, NOBODY);
    const lured = recorder();
    expect(startCompileCache(lure, lured.api)).toEqual({
      used: false,
      why: expect.stringContaining(`refused: the symbolic link "${lure}" is owned by uid ${NOBODY}, not root`),
    });
    expect(lured.calls).toEqual([]);
    await expect(stat(join(base, 'made-through-link'))).rejects.toThrow(/ENOENT/);
  });

  it('is switched off, leaves NODE_COMPILE_CACHE to Node, wants an absolute path, and never throws', async () => {
    const off = recorder();
    expect(startCompileCache('off', off.api)).toEqual({ used: false, why: 'ZFS_DYNAMIC_CREATOR_COMPILE_CACHE=off' });
    expect(startCompileCache('relative/dir', off.api).used).toBe(false);
    process.env.NODE_COMPILE_CACHE = join(base, 'admin');
    expect(startCompileCache(join(base, 'x'), off.api)).toEqual({ used: false, why: 'NODE_COMPILE_CACHE is set: Node uses its own' });
    delete process.env.NODE_COMPILE_CACHE;
    expect(off.calls).toEqual([]);
    // A path that cannot be made (below a regular file), and Node failing to enable it: reasons, not errors.
    expect(startCompileCache('/dev/null/compile', off.api)).toEqual({ used: false, why: expect.stringMatching(/: ENOTDIR$/) });
    const failing = recorder(0);
    expect(startCompileCache(join(base, 'failing'), failing.api)).toEqual({ used: false, why: 'Cannot write' });
  });

  it('is left alone by a run that promises to change nothing (a dry run, check-config)', () => {
    expect(changesNothing(['--dry-run', 'handle', '/tank/runs/x'])).toBe(true);
    expect(changesNothing(['--config', '/etc/x.yaml', 'check-config'])).toBe(true);
    expect(changesNothing(['tank/runs', '/tank/runs', '.hidden', 'IN_CREATE,IN_ISDIR'])).toBe(false);
    expect(changesNothing(['handle', '--', '--dry-run'])).toBe(false);
  });
});
