/** The command line as an administrator meets it: list-plugins, dry-run, status, errors. */
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import nodeModule from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';

let p: TestPool;
let config: string;

beforeAll(async () => {
  p = await createPool('cli');
  config = await writeConfig(p, [
    ...fastPlugins(),
    [join(import.meta.dirname, '..', 'fixtures', 'plugins', 'site-note.mjs'), { to: 'ops' }],
  ]);
});
afterAll(async () => {
  await p?.destroy();
});

describe('list-plugins', () => {
  it('shows every plugin of every root with its source, version and hooks in lifecycle order', async () => {
    const r = await cli(['--config', config, 'list-plugins', '--json'], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as {
      config: string;
      roots: { rootdir: string; plugins: { name: string; source: string; version: string; hooks: string[] }[] }[];
    };
    expect(out.config).toBe(config);
    expect(out.roots[0]!.rootdir).toBe(p.mount);
    const byName = Object.fromEntries(out.roots[0]!.plugins.map((x) => [x.name, x]));
    expect(byName['quiet-wait']).toMatchObject({ source: 'builtin', hooks: ['wait'] });
    expect(byName['rsync']!.hooks).toEqual(['prepare', 'filter', 'migrate', 'swap', 'cleanup', 'rollback']);
    expect(byName['site-note']).toMatchObject({ source: 'path', version: '1.2.3', hooks: ['publish', 'outcome'] });
    const text = await cli(['list-plugins', '--config', config], { stateDir: p.stateDir });
    expect(text.stdout).toMatch(/zfs\s+builtin\s+\S+\s+prepare, survey, filter, provision, swap, cleanup, rollback, assess/);
  });
});

describe('--dry-run', () => {
  it('says what would be done and changes nothing', async () => {
    const dir = join(p.mount, 'dry');
    await makeTree(dir, 4);
    // Every test of this file makes its own directories and takes them away: none sees another's.
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const before = await describeTree(dir);
    const r = await cli(['--dry-run', '--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toMatch(/would create .*\/dry at the staging mountpoint/);
    expect(r.stderr).toMatch(/would copy/);
    expect(r.stderr).toMatch(/would move the original into the holding directory/);
    expect(r.stderr).toContain(`dry run: would convert into ${p.pool}/dry; nothing was changed`);
    expect(r.stderr).not.toMatch(/\bconverted into\b/);
    expect(await describeTree(dir)).toEqual(before);
    expect((await datasets(p.pool)).length).toBe(1);
    expect((await readdir(p.mount)).filter((n) => n.startsWith('.'))).toEqual([]);
  });
});

describe('status and errors', () => {
  it('lists directories waiting to be converted', async () => {
    const dir = join(p.mount, 'waiting');
    await makeTree(dir, 2);
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    const r = await cli(['status', '--json', '--config', config], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    const out = JSON.parse(r.stdout) as { roots: { waiting: string[]; jobs: unknown[] }[] };
    expect(out.roots[0]!.waiting).toEqual(['waiting']);
    expect(out.roots[0]!.jobs).toEqual([]);
  });

  it('converts and tells the site plugin the outcome', async () => {
    await makeTree(join(p.mount, 'told'), 4);
    const r = await cli(['handle', join(p.mount, 'told'), '--config', config], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain('would tell ops: converted');
  });

  it('gives a one-line error naming the file and key for a bad config', async () => {
    const bad = join(p.work, 'bad.json');
    await writeFile(
      bad,
      JSON.stringify({ roots: [{ rootfs: p.pool, rootdir: p.mount, plugins: [['rsync', { graceSeconds: -1 }], 'zfs'] }] }),
    );
    const r = await cli(['--config', bad, 'handle', join(p.mount, 'x')], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`config ${bad}: roots[0].plugins[0][1]: graceSeconds:`);
  });

  it('handle --event ignores anything but the creation of a directory, quietly', async () => {
    await writeFile(join(p.mount, 'a-file'), 'x');
    onTestFinished(() => rm(join(p.mount, 'a-file'), { force: true }));
    const r = await cli(['--config', config, 'handle', '--event=IN_CREATE', join(p.mount, 'a-file')], { stateDir: p.stateDir });
    expect(r).toMatchObject({ exitCode: 0, stderr: '' });
  });

  it('prints its version', async () => {
    const r = await cli(['--version'], { stateDir: p.stateDir });
    expect(r).toMatchObject({ exitCode: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
  });

  it('refuses a directory outside every root', async () => {
    const r = await cli(['--config', config, 'handle', '/tmp/elsewhere/x'], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('is not a direct child of a configured root');
  });
});

describe('the compile cache', () => {
  it('is filled by a run on Node 22.1 and later, in a root-only directory, not by check-config, and not used on Node 20', async () => {
    const work = await mkdtemp(join(tmpdir(), 'zdc-ccache-'));
    onTestFinished(() => rm(work, { recursive: true, force: true }));
    const dir = join(work, 'compile');
    // check-config and dry runs change nothing, not even the cache.
    const checked = await cli(['--config', config, 'check-config'], {
      stateDir: p.stateDir,
      env: { ZFS_DYNAMIC_CREATOR_COMPILE_CACHE: dir },
    });
    expect(checked.exitCode, checked.stderr).toBe(0);
    await expect(stat(dir)).rejects.toThrow(/ENOENT/);
    // A name the filter leaves alone: the incron path, whose start-up the cache is for.
    const hidden = join(p.mount, '.hidden-cc');
    await mkdir(hidden);
    onTestFinished(() => rm(hidden, { recursive: true, force: true }));
    const r = await cli(['--config', config, p.pool, p.mount, '.hidden-cc', 'IN_CREATE,IN_ISDIR'], {
      stateDir: p.stateDir,
      env: { ZFS_DYNAMIC_CREATOR_COMPILE_CACHE: dir },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    if (typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === 'function') {
      expect((await stat(dir)).mode & 0o7777).toBe(0o700);
      // Node keeps one subdirectory per Node version, with an entry per module it compiled.
      const [version] = await readdir(dir);
      expect(version).toContain(process.version);
      expect((await readdir(join(dir, version!))).length).toBeGreaterThan(5);
    } else {
      await expect(stat(dir)).rejects.toThrow(/ENOENT/);
    }
  });
});
