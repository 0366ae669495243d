/**
 * The secure-path rule of src/core/trust.ts, on real files with real owners
 * (the tests run as root; "nobody" is uid 65534).
 */
import { existsSync } from 'node:fs';
import { chmod, chown, lchown, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/core/config.js';
import { createHooks } from '../../src/core/hooks.js';
import { loadPlugins } from '../../src/core/loader.js';
import { createLogger } from '../../src/core/logger.js';
import { assertTrusted, prepareStateDir, trustedOwners, untrustedReason } from '../../src/core/trust.js';
import { DEFAULT_PLUGINS } from '../../src/app.js';

const NOBODY = 65534;
let base: string;

beforeAll(async () => {
  expect(process.geteuid?.(), 'these tests run as root').toBe(0);
  // mkdtemp makes a root-owned 0700 directory in the root-owned sticky /tmp: a trusted place.
  base = await mkdtemp(join(tmpdir(), 'zdc-trust-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

let counter = 0;
async function fresh(): Promise<string> {
  const dir = join(base, `case${counter++}`);
  await mkdir(dir, { mode: 0o755 });
  await chmod(dir, 0o755);
  return dir;
}

async function file(dir: string, name = 'f.yaml', mode = 0o644): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, 'x: 1\n');
  await chmod(path, mode);
  return path;
}

describe('trusted owners', () => {
  it('is root alone when running as root', () => {
    expect(trustedOwners()).toEqual([0]);
  });
});

describe('the secure-path rule', () => {
  it('accepts a root-owned 0644 file under root-owned 0755/0700 directories and sticky /tmp', async () => {
    const f = await file(await fresh());
    expect(await untrustedReason(f, 'file')).toBeUndefined();
    expect(await assertTrusted(f, 'file', 'config x')).toBe(f);
  });

  it('walks up to /: with only uid 12345 trusted, / itself is the first thing refused', async () => {
    const f = await file(await fresh());
    expect(await untrustedReason(f, 'file', [12345])).toBe('"/" is owned by uid 0, not root');
  });

  it.each([
    [0o664, 'group'],
    [0o646, 'others'],
    [0o666, 'group and others'],
  ])('refuses a file of mode %s (writable by %s)', async (mode, who) => {
    const f = await file(await fresh(), 'f.yaml', mode);
    const reason = `"${f}" is writable by ${who} (mode 0${mode.toString(8)})`;
    expect(await untrustedReason(f, 'file')).toBe(reason);
    await expect(assertTrusted(f, 'file', `config ${f}`)).rejects.toThrow(
      `config ${f}: refused: ${reason}; it and every directory above it must be owned by root`,
    );
  });

  it('refuses a file owned by nobody, even read-only', async () => {
    const f = await file(await fresh(), 'f.yaml', 0o444);
    await chown(f, NOBODY, NOBODY);
    expect(await untrustedReason(f, 'file')).toBe(`"${f}" is owned by uid ${NOBODY}, not root`);
  });

  it.each([
    [0o775, 'group'],
    [0o757, 'others'],
    [0o777, 'group and others'],
  ])('refuses a file in a directory of mode %s, naming the directory', async (mode, who) => {
    const dir = await fresh();
    const sub = join(dir, 'sub');
    await mkdir(sub);
    const f = await file(sub);
    await chmod(dir, mode);
    expect(await untrustedReason(f, 'file')).toBe(`its directory "${dir}" is writable by ${who} (mode 0${mode.toString(8)})`);
  });

  it('refuses a file in a directory owned by nobody', async () => {
    const dir = await fresh();
    const f = await file(dir);
    await chown(dir, NOBODY, NOBODY);
    expect(await untrustedReason(f, 'file')).toBe(`"${dir}" is owned by uid ${NOBODY}, not root`);
  });

  it('accepts a root-owned sticky directory writable by all (like /tmp), but not a sticky one owned by nobody', async () => {
    const dir = await fresh();
    const sticky = join(dir, 'sticky');
    await mkdir(sticky);
    await chmod(sticky, 0o1777);
    const f = await file(sticky);
    expect(await untrustedReason(f, 'file')).toBeUndefined();
    await chown(sticky, NOBODY, NOBODY);
    expect(await untrustedReason(f, 'file')).toBe(`"${sticky}" is owned by uid ${NOBODY}, not root`);
  });

  it('does not accept the sticky exception for the file itself', async () => {
    const f = await file(await fresh(), 'f.yaml', 0o1666);
    expect(await untrustedReason(f, 'file')).toMatch(/is writable by group and others/);
  });

  it('checks the real path of a symbolic link: a trusted link to an untrusted place is refused', async () => {
    const trusted = await fresh();
    const open = await fresh();
    await chmod(open, 0o777);
    const target = await file(open);
    const link = join(trusted, 'config.yaml');
    await symlink(target, link);
    await expect(assertTrusted(link, 'file', `config ${link}`)).rejects.toThrow(
      `config ${link} (resolved to "${target}"): refused: its directory "${open}" is writable by group and others (mode 0777)`,
    );
  });

  it('checks the real path of a symbolic link: what it leads to is what counts, and is returned', async () => {
    const trusted = await fresh();
    const target = await file(trusted, 'real.yaml');
    const link = join(trusted, 'config.yaml');
    await symlink('real.yaml', link);
    expect(await assertTrusted(link, 'file', 'config')).toBe(target);
  });

  it('refuses a path through a symbolic link another user owns, even when it leads to a trusted place', async () => {
    const trusted = await fresh();
    const target = await file(trusted, 'real.yaml');
    // A sticky, world-writable directory (like /tmp), where anyone may plant a link.
    const sticky = await fresh();
    await chmod(sticky, 0o1777);
    const planted = join(sticky, 'config.yaml');
    await symlink(target, planted);
    await lchown(planted, NOBODY, NOBODY);
    await expect(assertTrusted(planted, 'file', 'config p')).rejects.toThrow(
      `config p: refused: the symbolic link "${planted}" is owned by uid ${NOBODY}, not root`,
    );
    // Met as a directory on the way, or inside another link's target: the same.
    const dirLink = join(sticky, 'dir');
    await symlink(trusted, dirLink);
    await lchown(dirLink, NOBODY, NOBODY);
    await expect(assertTrusted(join(dirLink, 'real.yaml'), 'file', 'config d')).rejects.toThrow(
      `the symbolic link "${dirLink}" is owned by uid ${NOBODY}, not root`,
    );
    const chained = join(trusted, 'chained');
    await symlink(join(dirLink, 'real.yaml'), chained);
    await expect(assertTrusted(chained, 'file', 'config c')).rejects.toThrow(
      `the symbolic link "${dirLink}" is owned by uid ${NOBODY}, not root`,
    );
    // The same link owned by root passes (what it leads to is checked, and returned).
    await lchown(planted, 0, 0);
    expect(await assertTrusted(planted, 'file', 'config r')).toBe(target);
    // And a stateDir is not made through such a link.
    const stateLink = join(sticky, 'state');
    await symlink(join(trusted, 'made-through-link'), stateLink);
    await lchown(stateLink, NOBODY, NOBODY);
    await expect(prepareStateDir(stateLink)).rejects.toThrow(`the symbolic link "${stateLink}" is owned by uid ${NOBODY}, not root`);
    await expect(stat(join(trusted, 'made-through-link'))).rejects.toThrow(/ENOENT/);
  });

  it('wants a regular file where a file is expected, a directory where a directory is', async () => {
    const dir = await fresh();
    expect(await untrustedReason(dir, 'file')).toBe(`"${dir}" is not a regular file`);
    const f = await file(dir);
    expect(await untrustedReason(f, 'directory')).toBe(`"${f}" is not a directory`);
  });

  it('names a path that does not exist', async () => {
    await expect(assertTrusted(join(base, 'missing.yaml'), 'file', 'config m')).rejects.toThrow(
      /^config m: cannot resolve .*missing\.yaml": ENOENT$/,
    );
  });
});

describe('the stateDir', () => {
  it('is created 0700 (with missing parents) in a trusted place', async () => {
    const dir = await fresh();
    const state = join(dir, 'a', 'b', 'state');
    expect(await prepareStateDir(state)).toBe(state);
    expect((await stat(state)).mode & 0o7777).toBe(0o700);
    expect((await stat(join(dir, 'a'))).mode & 0o7777).toBe(0o700);
    // Again, now that it exists.
    expect(await prepareStateDir(state)).toBe(state);
  });

  it('is not created in a dry run, but its existing parents are checked', async () => {
    const dir = await fresh();
    const state = join(dir, 'state');
    expect(await prepareStateDir(state, { create: false })).toBe(state);
    expect(existsSync(state)).toBe(false);
    await chmod(dir, 0o777);
    await expect(prepareStateDir(state, { create: false })).rejects.toThrow(
      `stateDir "${state}": refused: its directory "${dir}" is writable by group and others (mode 0777)`,
    );
  });

  it('refuses a stateDir writable by others, or owned by nobody, or under a directory writable by others', async () => {
    const dir = await fresh();
    const state = join(dir, 'state');
    await mkdir(state, { mode: 0o700 });
    await chmod(state, 0o757);
    await expect(prepareStateDir(state)).rejects.toThrow(`stateDir "${state}": refused: "${state}" is writable by others (mode 0757)`);
    await chmod(state, 0o700);
    await chown(state, NOBODY, NOBODY);
    await expect(prepareStateDir(state)).rejects.toThrow(`stateDir "${state}": refused: "${state}" is owned by uid ${NOBODY}, not root`);
    await chown(state, 0, 0);
    await chmod(dir, 0o777);
    await expect(prepareStateDir(state)).rejects.toThrow(`its directory "${dir}" is writable by group and others`);
    // A missing stateDir is not created below such a directory.
    await expect(prepareStateDir(join(dir, 'other'))).rejects.toThrow(`"${dir}" is writable by group and others`);
    expect(existsSync(join(dir, 'other'))).toBe(false);
  });

  it('accepts a stateDir below a root-owned sticky directory', async () => {
    const dir = await fresh();
    await chmod(dir, 0o1777);
    const state = join(dir, 'state');
    expect(await prepareStateDir(state)).toBe(state);
    // The sticky exception is for the directories above it, never for the stateDir itself.
    await chmod(state, 0o1777);
    await expect(prepareStateDir(state)).rejects.toThrow(`refused: "${state}" is writable by group and others (mode 1777)`);
  });
});

describe('config files and plugins are refused unread when untrusted', () => {
  it('a config file writable by others is refused before it is run', async () => {
    const dir = await fresh();
    const marker = join(dir, 'ran');
    const f = join(dir, 'config.cjs');
    await writeFile(
      f,
      `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'x');\nmodule.exports = { roots: [{ rootfs: 'tank/runs', rootdir: '/tank/runs' }] };\n`,
    );
    await chmod(f, 0o666);
    await expect(loadConfig(f, DEFAULT_PLUGINS)).rejects.toThrow(
      `config ${f}: refused: "${f}" is writable by group and others (mode 0666)`,
    );
    expect(existsSync(marker)).toBe(false);
    // The same file, made root's alone, is run and used.
    await chmod(f, 0o644);
    const c = await loadConfig(f, DEFAULT_PLUGINS);
    expect(c?.roots[0]!.rootdir).toBe('/tank/runs');
    expect(existsSync(marker)).toBe(true);
  });

  it('a package.json given with --config gives its "zfs-dynamic-creator" key', async () => {
    const dir = await fresh();
    const f = join(dir, 'package.json');
    await writeFile(f, JSON.stringify({ name: 'x', 'zfs-dynamic-creator': { roots: [{ rootfs: 'tank/a', rootdir: '/tank/a' }] } }));
    expect((await loadConfig(f, DEFAULT_PLUGINS))?.roots[0]!.rootfs).toBe('tank/a');
  });

  it('a plugin module owned by nobody is refused before it is imported', async () => {
    const dir = await fresh();
    const marker = join(dir, 'ran');
    const plugin = join(dir, 'evil.mjs');
    await writeFile(
      plugin,
      `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(marker)}, 'x');\nexport default { name: 'evil', apply() {} };\n`,
    );
    await chown(plugin, NOBODY, NOBODY);
    const ctx = {
      hooks: createHooks(),
      root: { rootfs: 'tank/runs', rootdir: '/tank/runs' },
      log: createLogger([]),
      dryRun: false,
      stateDir: '/tmp/none',
      baseDir: dir,
      where: 'config t.yaml: roots[0].plugins',
    };
    await expect(loadPlugins(['name-filter', './evil.mjs', 'zfs', 'rsync'], ctx)).rejects.toThrow(
      `config t.yaml: roots[0].plugins[1]: plugin "./evil.mjs" (${plugin}): refused: "${plugin}" is owned by uid ${NOBODY}, not root`,
    );
    expect(existsSync(marker)).toBe(false);
  });
});
