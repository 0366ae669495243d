import { describe, expect, it } from 'vitest';
import type { PluginSpec } from '../../src/core/types.js';
import { isDirectoryCreation, originalConfig, withPluginOptions } from '../../src/commands/original-cli.js';

describe('the original command line', () => {
  it('acts only on IN_CREATE with IN_ISDIR', () => {
    expect(isDirectoryCreation('IN_CREATE,IN_ISDIR')).toBe(true);
    expect(isDirectoryCreation('IN_ISDIR|IN_CREATE')).toBe(true);
    expect(isDirectoryCreation('IN_CREATE')).toBe(false);
    expect(isDirectoryCreation('IN_MOVED_TO,IN_ISDIR')).toBe(false);
  });

  it('maps the flags onto plugin options', () => {
    const c = originalConfig('zpool/runs', '/zpool/runs/', { delay: 30, addExport: true, onlyDirsMatching: '^\\d+$' }, undefined);
    expect(c.source).toBe('command line');
    expect(c.roots[0]!.rootdir).toBe('/zpool/runs');
    expect(c.roots[0]!.plugins).toEqual([
      ['name-filter', { regex: '^\\d+$' }],
      ['quiet-wait', { delaySeconds: 30 }],
      'zfs',
      'rsync',
      ['nfs-exports', { mode: 'exports-file' }],
      'syslog',
    ]);
  });

  it('keeps a config file root and its options, flags on top', () => {
    const file = originalConfig('zpool/runs', '/zpool/runs', {}, undefined);
    const plugins: PluginSpec[] = [['nfs-exports', { mode: 'drop-in' }], 'zfs'];
    const withFile = { ...file, source: '/etc/zfs-dynamic-creator/config.yaml', roots: [{ ...file.roots[0]!, plugins }] };
    const c = originalConfig('zpool/runs', '/zpool/runs', { addRemoveAllExports: true }, withFile);
    expect(c.roots[0]!.plugins).toEqual([['nfs-exports', { mode: 'drop-in', removeStale: true }], 'zfs']);
  });

  it('adds a missing plugin before the one named', () => {
    expect(withPluginOptions(['a', 'b'], 'x', { k: 1 }, 'b')).toEqual(['a', ['x', { k: 1 }], 'b']);
    expect(withPluginOptions(['a'], 'x', {}, 'missing')).toEqual(['a', ['x', {}]]);
  });
});
