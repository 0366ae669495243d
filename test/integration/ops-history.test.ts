/**
 * History on a real pool: a converted dataset carries when, by which version, how many files, how
 * many bytes and how long; `history` lists it from the dataset alone (the journal and the whole
 * state directory gone, as after a reinstall), and a dataset made by hand is not a conversion.
 */
import { rm, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { ownVersion } from '../../src/core/version.js';
import { humanTime } from '../../src/core/logger.js';

let p: TestPool;
let config: string;

beforeAll(async () => {
  p = await createPool('history');
  config = await writeConfig(p, fastPlugins());
});
afterAll(async () => {
  await p?.destroy();
});

interface HistoryJson {
  roots: {
    rootfs: string;
    conversions: {
      dataset: string;
      mountpoint: string;
      converted: string | null;
      version: string | null;
      seconds: number | null;
      files: number | null;
      bytes: number | null;
    }[];
  }[];
}

describe('history', () => {
  it('records each conversion on its dataset and lists it from there, after the state directory is gone', async () => {
    const dir = join(p.mount, 'run 1');
    await mkdir(join(dir, 'sub'), { recursive: true });
    await writeFile(join(dir, 'a'), Buffer.alloc(1000, 1));
    await writeFile(join(dir, 'sub', 'b'), Buffer.alloc(2345, 2));
    await writeFile(join(dir, 'sub', 'c'), '');
    const before = Date.now();
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    const after = Date.now();

    // The properties themselves, as `zfs get` shows them.
    const props = Object.fromEntries(
      (await zfs('get', '-H', '-o', 'property,value', 'all', `${p.pool}/run 1`))
        .split('\n')
        .map((l) => l.split('\t'))
        .filter(([k]) => k!.startsWith('org.zfs-dynamic-creator:')),
    );
    expect(props).toMatchObject({
      'org.zfs-dynamic-creator:state': 'live',
      'org.zfs-dynamic-creator:version': ownVersion(),
      'org.zfs-dynamic-creator:files': '3',
      'org.zfs-dynamic-creator:bytes': '3345',
    });
    const converted = Date.parse(props['org.zfs-dynamic-creator:converted']!);
    expect(converted).toBeGreaterThanOrEqual(before);
    expect(converted).toBeLessThanOrEqual(after);
    const seconds = Number(props['org.zfs-dynamic-creator:seconds']);
    expect(seconds).toBeGreaterThan(0);
    expect(seconds).toBeLessThanOrEqual((after - before) / 1000 + 0.1);

    // Made by hand, not converted: not history.
    await zfs('create', `${p.pool}/by-hand`);

    // Nothing of the tool's state is left: history reads the datasets.
    await rm(p.stateDir, { recursive: true, force: true });
    const h = await cli(['--config', config, 'history', '--json'], { stateDir: p.stateDir });
    expect(h.exitCode, h.stderr).toBe(0);
    const out = JSON.parse(h.stdout) as HistoryJson;
    expect(out.roots[0]!.conversions).toEqual([
      {
        rootdir: p.mount,
        dataset: `${p.pool}/run 1`,
        mountpoint: dir,
        converted: props['org.zfs-dynamic-creator:converted'],
        version: ownVersion(),
        seconds,
        files: 3,
        bytes: 3345,
      },
    ]);
    const text = await cli(['--config', config, 'history'], { stateDir: p.stateDir });
    expect(text.exitCode, text.stderr).toBe(0);
    expect(text.stdout).toContain(`${p.mount} (${p.pool}): 1 conversion(s)`);
    expect(text.stdout).toContain(
      `${humanTime(props['org.zfs-dynamic-creator:converted']!)} ${p.pool}/run 1: 3 file(s), 3.3 KiB, ${seconds} s, by zfs-dynamic-creator ${ownVersion()}`,
    );
    expect(text.stdout).not.toContain('by-hand');
  });
});
