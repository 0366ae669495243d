import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createHooks } from '../../src/core/hooks.js';
import { loadPlugins } from '../../src/core/loader.js';
import { createLogger } from '../../src/core/logger.js';

const base = {
  root: { rootfs: 'tank/runs', rootdir: '/tank/runs' },
  log: createLogger([]),
  dryRun: false,
  stateDir: '/tmp/none',
  baseDir: join(import.meta.dirname, '..', 'fixtures'),
  where: 'config t.yaml: roots[0].plugins',
};

describe('plugin loading', () => {
  it('loads builtins and a site plugin by path, recording the hooks each taps in lifecycle order', async () => {
    const hooks = createHooks();
    const loaded = await loadPlugins(['name-filter', 'zfs', 'rsync', ['./plugins/site-note.mjs', { to: 'ops' }]], { ...base, hooks });
    expect(loaded.map((p) => [p.name, p.source])).toEqual([
      ['name-filter', 'builtin'],
      ['zfs', 'builtin'],
      ['rsync', 'builtin'],
      ['site-note', 'path'],
    ]);
    expect(loaded[3]!.version).toBe('1.2.3');
    expect(loaded[3]!.taps).toEqual(['publish', 'outcome']);
    expect(loaded[1]!.taps).toEqual(['prepare', 'survey', 'filter', 'provision', 'swap', 'cleanup', 'rollback', 'assess']);
  });

  it('names the plugin and the key of a bad option', async () => {
    await expect(loadPlugins(['zfs', ['rsync', { graceSeconds: 'soon' }]], { ...base, hooks: createHooks() })).rejects.toThrow(
      /config t\.yaml: roots\[0\]\.plugins\[1\]\[1\]: graceSeconds: /,
    );
    await expect(loadPlugins([['./plugins/site-note.mjs', {}], 'zfs', 'rsync'], { ...base, hooks: createHooks() })).rejects.toThrow(
      'to: expected a string',
    );
    await expect(loadPlugins([['name-filter', { regex: '(' }], 'zfs', 'rsync'], { ...base, hooks: createHooks() })).rejects.toThrow(
      /regex: not a valid regular expression/,
    );
  });

  it('refuses an unknown plugin and a missing required phase', async () => {
    await expect(loadPlugins(['no-such-plugin'], { ...base, hooks: createHooks() })).rejects.toThrow(
      /plugin "no-such-plugin" is neither a builtin/,
    );
    await expect(loadPlugins(['name-filter'], { ...base, hooks: createHooks() })).rejects.toThrow(
      /no plugin taps the required "provision" phase/,
    );
  });

  it("imports the plugins together but reports the first bad spec in the config's order, and applies them in that order", async () => {
    // The unknown plugin (index 2) fails to resolve at once, while the bad options of index 1 are
    // only seen once its module is imported: the error is still index 1's.
    await expect(
      loadPlugins(['zfs', ['rsync', { graceSeconds: 'soon' }], 'no-such-plugin'], { ...base, hooks: createHooks() }),
    ).rejects.toThrow(/roots\[0\]\.plugins\[1\]\[1\]: graceSeconds: /);
    await expect(loadPlugins(['no-such-plugin', ['rsync', { graceSeconds: 'soon' }]], { ...base, hooks: createHooks() })).rejects.toThrow(
      /plugins\[0\]: cannot load plugin "no-such-plugin"/,
    );
    // Taps land in the config's order, whatever order the modules finished loading in.
    const hooks = createHooks();
    await loadPlugins([['./plugins/site-note.mjs', { to: 'ops' }], 'zfs', 'rsync', 'name-filter'], { ...base, hooks });
    expect(hooks.filter.taps.map((t) => t.name)).toEqual(['zfs', 'rsync', 'name-filter']);
    expect(hooks.publish.taps.map((t) => t.name)[0]).toBe('site-note');
  });
});
