/**
 * The instant between moving the original aside and mounting the dataset in its
 * place: a writer that makes the path again there must lose nothing, and nothing
 * it wrote may end up hidden under a mount.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('race');
});
afterAll(async () => {
  await p?.destroy();
});

describe('the path is made again just before the mount', () => {
  it('keeps the original and the new writes, both visible, and says so', async () => {
    const plugin = join(import.meta.dirname, '..', 'fixtures', 'plugins', 'recreate-at-mount.mjs');
    const config = await writeConfig(p, fastPlugins({ more: [plugin] }));
    const dir = join(p.mount, 'contested');
    await makeTree(dir, 6);
    const before = await describeTree(dir);

    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(1);
    expect(r.stderr.trim().split('\n').at(-1)).toMatch(/swap failed: .*keeping both/);

    // The late file is where its writer put it, not under a mount.
    expect(await readFile(join(dir, 'late-file'), 'utf8')).toBe('written in the instant before the mount');
    const rows = await datasets(p.pool);
    expect(rows.find((d) => d.name === `${p.pool}/contested`)?.mounted).toBe('no');
    // The original is whole, aside, and named in the journal for the administrator.
    const aside = (await readdir(p.mount)).filter((n) => n.endsWith('.orig'));
    expect(aside).toHaveLength(1);
    expect(await describeTree(join(p.mount, aside[0]!))).toEqual(before);
    const status = await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir });
    const jobs = (JSON.parse(status.stdout) as { roots: { jobs: { name: string; status: string; error?: string }[] }[] }).roots[0]!.jobs;
    expect(jobs).toMatchObject([{ name: 'contested', status: 'incomplete' }]);
    expect(jobs[0]!.error).toMatch(/keeping both/);
  });
});
