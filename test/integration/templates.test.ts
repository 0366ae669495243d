/**
 * Per-root templates and the zfs plugin's snapshot/readonly options, through the real CLI on a
 * real pool: two roots sharing one plugin list, one of them overriding the zfs plugin's options;
 * the effective options shown; misspelt overrides and bad snapshot names refused up front; a
 * SIGKILL between the finishing steps, then recover (with the config, and without it).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasetStates, fastPlugins, zfs, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';
import { run } from './safety-helpers.js';

let p: TestPool;
/** The second root: a child dataset mounted outside the first root. */
let second: { rootfs: string; rootdir: string };

beforeAll(async () => {
  p = await createPool('tmpl', 384);
  second = { rootfs: `${p.pool}/second`, rootdir: `${p.mount}-second` };
  await zfs('create', '-o', `mountpoint=${second.rootdir}`, second.rootfs);
});
afterAll(async () => {
  await p?.destroy();
  if (second) await rm(second.rootdir, { recursive: true, force: true });
});

/** A config: the shared list (`plugins`), root 0 = the pool's root with `overrides`, root 1 = the second root without. */
async function config(
  file: string,
  overrides: unknown,
  plugins: unknown[] = fastPlugins({ zfs: { properties: { compression: 'on' } } }),
): Promise<string> {
  const path = join(p.work, file);
  const roots = [
    { rootfs: p.pool, rootdir: p.mount, plugins: overrides },
    { rootfs: second.rootfs, rootdir: second.rootdir },
  ];
  await writeFile(path, JSON.stringify({ stateDir: p.stateDir, plugins, roots }, null, 1));
  return path;
}

/**
 * Whether the filesystem at `dir` refuses writes (EROFS). Asked by writing, not by `zfs get readonly`:
 * zfs-fuse reports "off (temporary)" for a dataset whose readonly=on is in force and persistent.
 */
async function refusesWrites(dir: string): Promise<boolean> {
  const probe = join(dir, '.readonly-probe');
  try {
    await writeFile(probe, 'x');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EROFS') return true;
    throw error;
  }
  await rm(probe);
  return false;
}

const prop = async (property: string, dataset: string): Promise<string> =>
  (await zfs('get', '-H', '-o', 'value', property, dataset)).trim();
const snapshots = async (dataset: string): Promise<string[]> =>
  (await zfs('list', '-H', '-t', 'snapshot', '-o', 'name', '-r', dataset)).split('\n').filter(Boolean);

describe('a root that overrides some of the shared plugins', () => {
  it('check-config --options and list-plugins --json show each root its effective options', async () => {
    const file = await config('shown.json', { zfs: { snapshot: 'converted', readonly: true, properties: { quota: '100M' } } });
    const c = await cli(['--config', file, 'check-config', '--options'], { stateDir: p.stateDir });
    expect(c.exitCode, c.stderr).toBe(0);
    expect(c.stdout).toContain(`  ${p.mount} (${p.pool}): name-filter, quiet-wait, zfs, rsync\n`);
    expect(c.stdout).toContain(
      `    zfs: {"properties":{"compression":"on","quota":"100M"},"command":"zfs","busyAttempts":8,"busyFirstDelayMs":250,"snapshot":"converted","readonly":true,"mapNames":false}  (plugins[2] with roots[0].plugins.zfs merged in)\n`,
    );
    expect(c.stdout).toContain(
      `    zfs: {"properties":{"compression":"on"},"command":"zfs","busyAttempts":8,"busyFirstDelayMs":250,"readonly":false,"mapNames":false}\n`,
    );

    const l = await cli(['--config', file, 'list-plugins', '--json'], { stateDir: p.stateDir });
    expect(l.exitCode, l.stderr).toBe(0);
    const roots = (
      JSON.parse(l.stdout) as {
        roots: {
          rootdir: string;
          plugins: { name: string; options: Record<string, unknown>; configuredAt?: string; overriddenAt?: string }[];
        }[];
      }
    ).roots;
    const zfsOf = (i: number): { options: Record<string, unknown>; configuredAt?: string; overriddenAt?: string } =>
      roots[i]!.plugins.find((x) => x.name === 'zfs')!;
    expect(zfsOf(0)).toMatchObject({
      options: { snapshot: 'converted', readonly: true, properties: { compression: 'on', quota: '100M' } },
      configuredAt: 'plugins[2]',
      overriddenAt: 'roots[0].plugins.zfs',
    });
    expect(zfsOf(1)).toMatchObject({ options: { readonly: false, properties: { compression: 'on' } }, configuredAt: 'plugins[2]' });
    expect(zfsOf(1)).not.toHaveProperty('overriddenAt');

    const text = await cli(['--config', file, 'list-plugins', '--options'], { stateDir: p.stateDir });
    expect(text.stdout).toContain('plugins[2] with roots[0].plugins.zfs merged in');
  });

  it('refuses, up front and naming the file and key, a misspelt override, a plugin left out that a phase needs, and a bad snapshot name', async () => {
    const cases: [unknown, string][] = [
      [
        { zsf: { readonly: true } },
        'roots[0].plugins.zsf: no plugin "zsf" in the plugin list (plugins: name-filter, quiet-wait, zfs, rsync) (did you mean "zfs"?)',
      ],
      [{ rsync: false }, 'roots[0].plugins: no plugin taps the required "migrate" phase'],
      [{ zfs: { snapshot: 'con verted' } }, 'roots[0].plugins.zfs: snapshot: "con verted" is not a ZFS snapshot name'],
      [{ zfs: { snapshot: 'a@b' } }, 'roots[0].plugins.zfs: snapshot: "a@b" is not a ZFS snapshot name: it holds "@"'],
      [{ zfs: { readOnly: true } }, 'roots[0].plugins.zfs: readOnly: unknown key "readOnly" (did you mean "readonly"?)'],
    ];
    for (const [index, [overrides, message]] of cases.entries()) {
      const file = await config(`bad-${index}.json`, overrides);
      const r = await cli(['--config', file, 'check-config'], { stateDir: p.stateDir });
      expect(r.exitCode, r.stderr).toBe(2);
      expect(r.stderr).toContain(`config ${file}: ${message}`);
      const h = await cli(['--config', file, 'handle', join(p.mount, 'never')], { stateDir: p.stateDir });
      expect(h.exitCode).toBe(2);
      expect(h.stderr).toContain(`config ${file}: ${message}`);
    }
    const d = await cli(['--config', await config('bad-doctor.json', { zfs: { snapshot: 'a/b' } }), 'doctor'], { stateDir: p.stateDir });
    expect(d.exitCode).toBe(1);
    expect(d.stdout).toMatch(
      /^FAIL +roots\[0\]\.plugins +config .*bad-doctor\.json: roots\[0\]\.plugins\.zfs: snapshot: "a\/b" is not a ZFS snapshot name/m,
    );
    // doctor names where a property is written: the override, or the shared list's entry
    const misspelt = await config(
      'doctor-override.json',
      { zfs: { properties: { compresion: 'on' } } },
      fastPlugins({ zfs: { properties: { atime: 'of' } } }),
    );
    const m = await cli(['--config', misspelt, 'doctor'], { stateDir: p.stateDir });
    expect(m.exitCode).toBe(1);
    expect(m.stdout).toContain(
      `config ${misspelt}: roots[0].plugins.zfs.properties.compresion: ${p.pool}'s pool has no property "compresion" (did you mean "compression"?)`,
    );
    expect(m.stdout).toMatch(
      new RegExp(
        `config ${misspelt.replace(/[.]/g, '\\.')}: plugins\\[2\\]\\[1\\]\\.properties\\.atime: "of" is refused by ${second.rootfs}'s pool`,
      ),
    );
    expect((await datasetStates(p)).has('never')).toBe(false);
  });

  it('a dry run says it would set readonly and snapshot, and changes nothing', async () => {
    const file = await config('dry.json', { zfs: { snapshot: 'converted', readonly: true } });
    await makeTree(join(p.mount, 'dry'), 3);
    const r = await cli(['--config', file, '--dry-run', '-v', 'handle', join(p.mount, 'dry')], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toContain(`would set readonly=on on ${p.pool}/dry`);
    expect(r.stderr).toContain(`would snapshot ${p.pool}/dry@converted`);
    expect((await datasetStates(p)).has('dry')).toBe(false);
  });

  it('converts with the merged options in the overriding root (readonly, snapshot of the verified data) and the shared ones in the other', async () => {
    const file = await config('convert.json', { zfs: { snapshot: 'converted', readonly: true, properties: { quota: '100M' } } });
    const dir = join(p.mount, 'run1');
    await makeTree(dir, 8);
    const before = await describeTree(dir);
    const r = await cli(['--config', file, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    const ds = `${p.pool}/run1`;
    expect(await prop('org.zfs-dynamic-creator:state', ds)).toBe('live');
    expect(await refusesWrites(dir)).toBe(true);
    expect(await prop('quota', ds)).toBe('100M');
    expect(await prop('compression', ds)).toBe('on');
    expect(await snapshots(ds)).toEqual([`${ds}@converted`]);
    expect(await describeTree(dir)).toEqual(before);
    // The snapshot holds the verified data (seen through a clone: zfs-fuse has no .zfs directory).
    const clone = `${p.pool}/check-clone`;
    const at = join(p.work, 'check-clone');
    await zfs('clone', '-o', `mountpoint=${at}`, `${ds}@converted`, clone);
    const inSnapshot = await describeTree(at);
    // zfs-fuse answers "busy" for a moment after the walk.
    for (let i = 0; (await execa('zfs', ['destroy', '-f', clone], { reject: false })).exitCode !== 0; i++) {
      if (i === 40) throw new Error(`cannot destroy ${clone}`);
      await sleep(250);
    }
    expect(inSnapshot).toEqual(before);

    const other = join(second.rootdir, 'run2');
    await makeTree(other, 4);
    const o = await cli(['--config', file, 'handle', other], { stateDir: p.stateDir });
    expect(o.exitCode, o.stderr).toBe(0);
    const ds2 = `${second.rootfs}/run2`;
    expect(await prop('org.zfs-dynamic-creator:state', ds2)).toBe('live');
    expect(await refusesWrites(other)).toBe(false);
    expect(await snapshots(ds2)).toEqual([]);
  });
});

describe('every way of running a job uses the merged view', () => {
  it('the 4-argument form (incron) and reconcile', async () => {
    const file = await config('forms.json', { zfs: { snapshot: 'done' } });
    await makeTree(join(p.mount, 'incron1'), 3);
    const r = await cli(['--config', file, p.pool, p.mount, 'incron1', 'IN_CREATE,IN_ISDIR'], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(await snapshots(`${p.pool}/incron1`)).toEqual([`${p.pool}/incron1@done`]);

    await makeTree(join(p.mount, 'swept0'), 3);
    await makeTree(join(second.rootdir, 'swept1'), 3);
    const s = await cli(['--config', file, 'reconcile'], { stateDir: p.stateDir });
    expect(s.exitCode, s.stderr).toBe(0);
    expect(await snapshots(`${p.pool}/swept0`)).toEqual([`${p.pool}/swept0@done`]);
    expect(await prop('org.zfs-dynamic-creator:state', `${second.rootfs}/swept1`)).toBe('live');
    expect(await snapshots(`${second.rootfs}/swept1`)).toEqual([]);
  });
});

describe('SIGKILL between the finishing steps, then recover', () => {
  /** [killAt, when, how it is recovered: recover with the config, recover from the journal alone, the 2-argument form] */
  const POINTS: [string, 'before' | 'after', 'config' | 'journal' | 'two-arguments'][] = [
    ['cleanup/readonly', 'before', 'config'],
    ['cleanup/readonly', 'after', 'config'],
    ['cleanup/snapshot', 'before', 'config'],
    ['cleanup/snapshot', 'after', 'config'],
    ['cleanup/snapshot', 'after', 'journal'],
    ['cleanup/snapshot', 'before', 'two-arguments'],
  ];
  it.each(POINTS)('killed %s %s; recovered (%s): one snapshot, readonly, live, and no snapshot error', async (killAt, when, how) => {
    const name = `k-${killAt.replace('/', '.')}-${when}-${how}`;
    const dir = join(p.mount, name);
    await mkdir(dir);
    await makeTree(join(dir, 'data'), 5);
    const before = await describeTree(dir);
    const plugins = fastPlugins({
      zfs: { properties: { compression: 'on' } },
      more: [['fault-injection', { killAt, when, names: [name] }]],
    });
    const file = await config(`kill-${name}.json`, { zfs: { snapshot: 'converted', readonly: true } }, plugins);
    const killed = await run(['--config', file, 'handle', dir], p.stateDir);
    expect(killed.signal, killed.stderr).toBe('SIGKILL');
    const ds = `${p.pool}/${name}`;
    expect(await prop('org.zfs-dynamic-creator:state', ds)).toBe('swapped');
    expect(await snapshots(ds)).toEqual(killAt === 'cleanup/snapshot' && when === 'after' ? [`${ds}@converted`] : []);
    expect(await refusesWrites(dir)).toBe(!(killAt === 'cleanup/readonly' && when === 'before'));

    const args = how === 'config' ? ['--config', file, 'recover'] : how === 'journal' ? ['recover'] : ['--config', file, p.pool, p.mount];
    const r = await run(args, p.stateDir);
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr).not.toMatch(/already exists|ERROR/);
    if (killAt === 'cleanup/snapshot' && when === 'after')
      expect(r.stderr).toContain(`${ds}@converted is already there (made by an earlier run of this job); kept`);
    expect(await prop('org.zfs-dynamic-creator:state', ds)).toBe('live');
    expect(await refusesWrites(dir)).toBe(true);
    expect(await snapshots(ds)).toEqual([`${ds}@converted`]);
    expect(await describeTree(dir)).toEqual(before);

    // Nothing left to do: a second recover is a no-op.
    const again = await run(args, p.stateDir);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(await snapshots(ds)).toEqual([`${ds}@converted`]);
  });
});
