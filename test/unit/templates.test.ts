/** Per-root templates: the shared plugin list with a root's overrides merged in (src/core/config.ts). */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { deepMerge, mergePlugins, optionsLocation, validateConfig } from '../../src/core/config.js';
import { createHooks } from '../../src/core/hooks.js';
import { loadPlugins } from '../../src/core/loader.js';
import { createLogger } from '../../src/core/logger.js';
import { DEFAULT_PLUGINS } from '../../src/app.js';
import zfsPlugin from '../../plugins/zfs/index.js';
import { snapshotNameProblem } from '../../plugins/zfs/zfs.js';

const shared: unknown[] = [
  'name-filter',
  ['quiet-wait', { quietSeconds: 5 }],
  ['zfs', { properties: { compression: 'lz4', quota: '1T' } }],
  'rsync',
  'syslog',
];
const root = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ rootfs: 'tank/runs', rootdir: '/tank/runs', ...extra });

describe('deepMerge', () => {
  it('merges plain objects key by key, replaces arrays, scalars and null, and changes neither argument', () => {
    const base = { a: { b: 1, c: [1, 2], d: { e: 'x' } }, f: 'keep', g: { h: 1 } };
    const over = { a: { c: [3], d: { z: true } }, g: null, n: 4 };
    const out = deepMerge(base, over);
    expect(out).toEqual({ a: { b: 1, c: [3], d: { e: 'x', z: true } }, f: 'keep', g: null, n: 4 });
    expect(base).toEqual({ a: { b: 1, c: [1, 2], d: { e: 'x' } }, f: 'keep', g: { h: 1 } });
    expect(over).toEqual({ a: { c: [3], d: { z: true } }, g: null, n: 4 });
  });
});

describe('a root that overrides some plugins of the shared list', () => {
  it('merges its options into the shared entry, keeps the order, and records where each came from', () => {
    const c = validateConfig(
      {
        plugins: shared,
        roots: [
          root({ plugins: { zfs: { properties: { quota: '2T' }, snapshot: 'converted' }, syslog: false } }),
          root({ rootdir: '/tank/other', rootfs: 'tank/other' }),
        ],
      },
      'x.yaml',
      DEFAULT_PLUGINS,
    );
    expect(c.roots[0]!.plugins).toEqual([
      'name-filter',
      ['quiet-wait', { quietSeconds: 5 }],
      ['zfs', { properties: { compression: 'lz4', quota: '2T' }, snapshot: 'converted' }],
      'rsync',
    ]);
    expect(c.roots[0]!.origins?.map((o) => [o.spec, o.override?.at])).toEqual([
      ['plugins[0]', undefined],
      ['plugins[1]', undefined],
      ['plugins[2]', 'roots[0].plugins.zfs'],
      ['plugins[3]', undefined],
    ]);
    // the other root gets the shared list untouched (not the first root's merge)
    expect(c.roots[1]!.plugins).toEqual(shared);
    expect(shared[2]).toEqual(['zfs', { properties: { compression: 'lz4', quota: '1T' } }]);
  });

  it('merges into the default list when there is no shared one, and turns a bare name into [name, options]', () => {
    const c = validateConfig({ roots: [root({ plugins: { 'quiet-wait': { quietSeconds: 30 } } })] }, 'x.yaml', DEFAULT_PLUGINS);
    expect(c.roots[0]!.plugins).toEqual(['name-filter', ['quiet-wait', { quietSeconds: 30 }], 'zfs', 'rsync', 'syslog']);
  });

  it('an empty map changes nothing; a list of its own still replaces the shared one', () => {
    expect(validateConfig({ plugins: shared, roots: [root({ plugins: {} })] }, 'x.yaml', DEFAULT_PLUGINS).roots[0]!.plugins).toEqual(
      shared,
    );
    const own = validateConfig({ plugins: shared, roots: [root({ plugins: ['zfs', 'rsync'] })] }, 'x.yaml', DEFAULT_PLUGINS).roots[0]!;
    expect(own.plugins).toEqual(['zfs', 'rsync']);
    expect(own.origins?.map((o) => o.spec)).toEqual(['roots[0].plugins[0]', 'roots[0].plugins[1]']);
  });

  it.each([
    [
      { plugins: shared, roots: [root({ plugins: { zsf: { properties: {} } } })] },
      'config x.yaml: roots[0].plugins.zsf: no plugin "zsf" in the plugin list (plugins: name-filter, quiet-wait, zfs, rsync, syslog) (did you mean "zfs"?); an override changes the options of a plugin in that list',
    ],
    [
      { roots: [root({ plugins: { 'nfs-exports': {} } })] },
      'config x.yaml: roots[0].plugins.nfs-exports: no plugin "nfs-exports" in the default plugin list (name-filter, quiet-wait, zfs, rsync, syslog;',
    ],
    [
      { plugins: ['zfs', 'zfs', 'rsync'], roots: [root({ plugins: { zfs: {} } })] },
      'config x.yaml: roots[0].plugins.zfs: plugin "zfs" is in the plugin list (plugins: zfs, zfs, rsync) 2 times',
    ],
    [
      { plugins: shared, roots: [root({ plugins: { zfs: true } })] },
      "config x.yaml: roots[0].plugins.zfs: must be the options to merge into the plugin's own (a mapping), or false",
    ],
    [{ plugins: shared, roots: [root({ plugins: { zfs: ['x'] } })] }, 'config x.yaml: roots[0].plugins.zfs: must be the options'],
    [
      { plugins: shared, roots: [root({ plugins: 'zfs' })] },
      'config x.yaml: roots[0].plugins: must be a list of plugins (replacing the shared list) or a map',
    ],
    [{ plugins: shared, roots: [root({ plugins: [['zfs', 'x']] })] }, 'config x.yaml: roots[0].plugins[0]'],
    [{ plugins: shared, roots: [root({ plugins: ['zfs', ''] })] }, 'config x.yaml: roots[0].plugins[1]: a plugin name, path or package'],
  ])('names the file and the key: %j', (raw, message) => {
    expect(() => validateConfig(raw, 'x.yaml', DEFAULT_PLUGINS)).toThrow(message);
  });

  it('tells where an option is written: in the override when it sets it (or replaces a value above it), else in the list', () => {
    const merged = mergePlugins(
      shared as never,
      { zfs: { properties: { quota: '2T' }, snapshot: 'x' }, 'quiet-wait': { names: ['a'] } },
      { root: 1, sharedAt: 'plugins' },
    );
    if (typeof merged === 'string') throw new Error(merged);
    const zfs = merged.origins[2]!;
    expect(optionsLocation(zfs, ['properties', 'quota'])).toBe('roots[1].plugins.zfs.properties.quota');
    expect(optionsLocation(zfs, ['properties', 'compression'])).toBe('plugins[2][1].properties.compression');
    expect(optionsLocation(zfs, ['snapshot'])).toBe('roots[1].plugins.zfs.snapshot');
    expect(optionsLocation(zfs, ['busyAttempts'])).toBe('plugins[2][1].busyAttempts');
    expect(optionsLocation(merged.origins[1]!, ['names', 0])).toBe('roots[1].plugins.quiet-wait.names[0]');
    expect(optionsLocation(merged.origins[0]!, ['regex'])).toBe('plugins[0][1].regex');
  });
});

describe('loading a merged list names the override or the list entry in errors', () => {
  const base = {
    root: { rootfs: 'tank/runs', rootdir: '/tank/runs' },
    log: createLogger([]),
    dryRun: true,
    stateDir: '/tmp/none',
    baseDir: join(import.meta.dirname, '..', 'fixtures'),
    where: 'config t.yaml: roots[0].plugins',
  };
  const load = async (over: Record<string, Record<string, unknown> | false>): Promise<unknown> => {
    const c = validateConfig({ plugins: shared, roots: [root({ plugins: over })] }, 't.yaml', DEFAULT_PLUGINS);
    return loadPlugins(c.roots[0]!.plugins, {
      ...base,
      hooks: createHooks(),
      origins: { file: 'config t.yaml', of: c.roots[0]!.origins! },
    });
  };

  it('a bad value set by the override', async () => {
    await expect(load({ zfs: { snapshot: 'bad name' } })).rejects.toThrow(
      'config t.yaml: roots[0].plugins.zfs: snapshot: "bad name" is not a ZFS snapshot name: it holds " ", and a snapshot name allows only letters, digits and - _ . :',
    );
    await expect(load({ zfs: { readonly: 'yes' } })).rejects.toThrow(/^config t\.yaml: roots\[0\]\.plugins\.zfs: readonly: /);
    await expect(load({ zfs: { snapshott: 'converted' } })).rejects.toThrow(
      'config t.yaml: roots[0].plugins.zfs: snapshott: unknown key "snapshott" (did you mean "snapshot"?)',
    );
  });

  it('a bad value of the shared list, and a required phase left out', async () => {
    await expect(load({ 'quiet-wait': { maxWaitSeconds: 60 }, zfs: { properties: { quota: '2T' } } })).resolves.toHaveLength(5);
    const bad = [...shared];
    bad[1] = ['quiet-wait', { quietSeconds: 'ten' }];
    const c = validateConfig(
      { plugins: bad, roots: [root({ plugins: { 'quiet-wait': { maxWaitSeconds: 60 } } })] },
      't.yaml',
      DEFAULT_PLUGINS,
    );
    await expect(
      loadPlugins(c.roots[0]!.plugins, { ...base, hooks: createHooks(), origins: { file: 'config t.yaml', of: c.roots[0]!.origins! } }),
    ).rejects.toThrow(/^config t\.yaml: plugins\[1\]\[1\]: quietSeconds: /);
    await expect(load({ rsync: false })).rejects.toThrow('config t.yaml: roots[0].plugins: no plugin taps the required "migrate" phase');
  });
});

describe('the zfs plugin: snapshot and readonly options', () => {
  it('accepts ZFS snapshot names and refuses the rest', () => {
    for (const good of ['converted', 'run-1.done:final', 'A_b']) expect(snapshotNameProblem(good)).toBeUndefined();
    expect(snapshotNameProblem('')).toContain('must not be empty');
    expect(snapshotNameProblem('a@b')).toContain('it holds "@"');
    expect(snapshotNameProblem('a/b')).toContain('it holds "/"');
    expect(snapshotNameProblem('with space')).toContain('it holds " "');
    expect(snapshotNameProblem('x'.repeat(255))).toContain('too long');
  });

  it('parses them, with readonly off and no snapshot by default, and refuses readonly as a creation property', () => {
    expect(zfsPlugin.options!.parse({})).toMatchObject({ readonly: false });
    expect(zfsPlugin.options!.parse({})).not.toHaveProperty('snapshot');
    expect(zfsPlugin.options!.parse({ snapshot: 'converted', readonly: true })).toMatchObject({ readonly: true, snapshot: 'converted' });
    expect(() => zfsPlugin.options!.parse({ properties: { readonly: 'on' } })).toThrow(/use the zfs plugin's option readonly: true/);
  });
});
