import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, validateConfig } from '../../src/core/config.js';
import { DEFAULT_PLUGINS } from '../../src/app.js';

const root = { rootfs: 'tank/runs', rootdir: '/tank/runs' };

describe('config validation', () => {
  it('fills defaults and gives each root the shared plugin list', () => {
    const c = validateConfig({ roots: [root] }, 'x.yaml', DEFAULT_PLUGINS);
    expect(c.roots[0]!.plugins).toEqual(DEFAULT_PLUGINS);
    expect(c.lockStaleSeconds).toBe(10);
    expect(c.watch.concurrency).toBe(2);
  });

  it('accepts a removed key (lockStaleSeconds), ignores it, and names it in one notice line', () => {
    expect(validateConfig({ roots: [root] }, 'x.yaml', DEFAULT_PLUGINS).notices).toEqual([]);
    const c = validateConfig({ lockStaleSeconds: 30, roots: [root] }, 'x.yaml', DEFAULT_PLUGINS);
    expect(c.notices).toEqual([
      'config x.yaml: lockStaleSeconds: no longer used, ignored: a lock is a kernel flock(2) lock, which ends with its process and is never taken over after a timeout; remove the key',
    ]);
  });

  it('takes a layout below the root (depth, a pattern per level, trusted owners); depth 1 is no layout', () => {
    const layout = { depth: 3, levels: ['.*', '.*', '^\\d{8}_'], trustedOwners: [4242] };
    expect(validateConfig({ roots: [{ ...root, layout }] }, 'x.yaml', DEFAULT_PLUGINS).roots[0]!.layout).toEqual(layout);
    expect(validateConfig({ roots: [{ ...root, layout: { depth: 1 } }] }, 'x.yaml', DEFAULT_PLUGINS).roots[0]!.layout).toBeUndefined();
    for (const bad of [{ depth: 2, levels: ['.*'] }, { depth: 1, trustedOwners: [1] }, { depth: 2, levels: ['(', '.*'] }, { depth: 9 }]) {
      expect(() => validateConfig({ roots: [{ ...root, layout: bad }] }, 'x.yaml', DEFAULT_PLUGINS)).toThrow(/roots\[0\]\.layout/);
    }
  });

  it('accepts "name" and ["name", {options}]', () => {
    const c = validateConfig({ roots: [{ ...root, plugins: ['zfs', ['rsync', { graceSeconds: 5 }]] }] }, 'x.yaml', DEFAULT_PLUGINS);
    expect(c.roots[0]!.plugins).toEqual(['zfs', ['rsync', { graceSeconds: 5 }]]);
  });

  it.each([
    [{ roots: [] }, 'config x.yaml: roots: list at least one root'],
    [{ roots: [{ ...root, rootdir: 'relative' }] }, 'config x.yaml: roots[0].rootdir: must be an absolute path'],
    [{ roots: [{ ...root, rootfs: '-o' }] }, 'config x.yaml: roots[0].rootfs: must be a filesystem name'],
    [{ roots: [{ ...root, plugins: [['zfs', 'not-an-object']] }] }, 'config x.yaml: roots[0].plugins[0]'],
    [{ roots: [root], colour: 'blue' }, 'config x.yaml: colour: unknown key "colour"'],
    [{ roots: [root, root] }, 'config x.yaml: roots[1].rootdir: /tank/runs is listed twice'],
  ])('names the file and the key: %j', (raw, message) => {
    expect(() => validateConfig(raw, 'x.yaml', DEFAULT_PLUGINS)).toThrow(message);
  });

  it('loads YAML from a path and reports an empty file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zdc-config-'));
    const file = join(dir, 'config.yaml');
    await writeFile(file, 'roots:\n  - rootfs: tank/runs\n    rootdir: /tank/runs/\n');
    const c = await loadConfig(file, DEFAULT_PLUGINS);
    expect(c?.source).toBe(file);
    expect(c?.roots[0]!.rootdir).toBe('/tank/runs');
    await writeFile(file, '');
    await expect(loadConfig(file, DEFAULT_PLUGINS)).rejects.toThrow('the file is empty');
    await expect(loadConfig(join(dir, 'missing.yaml'), DEFAULT_PLUGINS)).rejects.toThrow('no such file');
  });
});
