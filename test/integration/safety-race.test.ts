/**
 * The instant between moving the original aside and mounting the dataset in its place (after the
 * commit point): a writer that makes the path again there must lose nothing, nothing it wrote may
 * end up hidden under a mount, and the message must say exactly what to do, safely.
 */
import { lstat, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';
import { helperPath, leftovers } from '../helpers/state.js';
import { writeNamedConfig } from './safety-helpers.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('race');
});
afterAll(async () => {
  await p?.destroy();
});

describe('the path is made again just before the mount', () => {
  it('keeps the original, the converted data and the new writes, says what to do, and recover then finishes', async () => {
    const plugin = join(import.meta.dirname, '..', 'fixtures', 'plugins', 'recreate-at-mount.mjs');
    const config = await writeConfig(p, fastPlugins({ more: [plugin] }));
    const dir = join(p.mount, 'contested');
    await makeTree(dir, 6);
    const before = await describeTree(dir);

    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(1);
    const last = r.stderr.trim().split('\n').at(-1)!;
    expect(last).toMatch(
      /swap failed: .*was made again and is not empty; keeping both: .*stays unmounted.*move .* out of the way .*then run 'zfs-dynamic-creator recover'/,
    );

    // The late file is where its writer put it, not under a mount.
    expect(await readFile(join(dir, 'late-file'), 'utf8')).toBe('written in the instant before the mount');
    const row = (await datasets(p.pool)).find((d) => d.name === `${p.pool}/contested`);
    // Not at the path (the tool checks its mountpoint is still empty before it mounts; the dataset
    // stays where it was, in the root-only holding directory).
    expect(row).toMatchObject({ state: 'swapped' });
    expect(row?.mounted === 'yes' && row.mountpoint === dir).toBe(false);
    // The original is whole, kept in the holding directory, and named in the journal for the administrator.
    const aside = helperPath(p, 'contested', 'orig');
    expect(await describeTree(aside)).toEqual(before);
    const status = await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir });
    const jobs = (
      JSON.parse(status.stdout) as { roots: { jobs: { name: string; status: string; committed: boolean; error?: string }[] }[] }
    ).roots[0]!.jobs;
    expect(jobs).toMatchObject([{ name: 'contested', status: 'incomplete', committed: true }]);
    expect(jobs[0]!.error).toMatch(/keeping both/);

    // A recover before anything is done changes nothing (the job passed its commit point: never undone).
    const early = await cli(['--config', config, 'recover'], { stateDir: p.stateDir });
    expect(early.exitCode).toBe(1);
    expect(await readFile(join(dir, 'late-file'), 'utf8')).toBe('written in the instant before the mount');
    expect(await describeTree(aside)).toEqual(before);
    expect((await datasets(p.pool)).map((d) => d.name)).toContain(`${p.pool}/contested`);

    // Following the message is safe: move the path out of the way, run recover.
    await rename(dir, `${dir}.moved`);
    const plain = await writeNamedConfig(p, 'plain.json', fastPlugins());
    const rec = await cli(['--config', plain, 'recover'], { stateDir: p.stateDir });
    expect(rec.exitCode).toBe(0);
    expect(await describeTree(dir)).toEqual(before);
    expect((await lstat(dir)).dev).not.toBe((await lstat(p.mount)).dev);
    expect(await readFile(join(`${dir}.moved`, 'late-file'), 'utf8')).toBe('written in the instant before the mount');
    expect(await leftovers(p)).toEqual([]);
  });
});
