/**
 * `reconcile --root` as incron runs it, once per event: sweeps of a root run one
 * at a time; a sweep started while another waits to start leaves the work to it.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliSpawn, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';

let p: TestPool;
let config: string;

beforeAll(async () => {
  p = await createPool('sweeplock');
  config = await writeConfig(p, fastPlugins({ quiet: { maxWaitSeconds: 60 } }));
});
afterAll(async () => {
  await p?.destroy();
});

interface Summary {
  rootdir: string;
  jobs: { name: string; outcome: string }[];
}

describe('sweeps of one root', () => {
  it('run one at a time; a third, while the second waits, returns at once and the second sees what it would have', async () => {
    await mkdir(join(p.mount, 'slow'));
    await writeFile(join(p.mount, 'slow', 'f'), 'slow\n');
    // Someone works in it: the first sweep waits for it to be quiet.
    const holder = execa('sleep', ['120'], { cwd: join(p.mount, 'slow'), reject: false });
    const args = ['--config', config, 'reconcile', '--root', p.mount, '--json'];
    const first = cliSpawn(args, { stateDir: p.stateDir });
    await sleep(2000);
    const second = cliSpawn(args, { stateDir: p.stateDir });
    await sleep(2000);
    const started = Date.now();
    const third = await cli(args, { stateDir: p.stateDir });
    expect(Date.now() - started).toBeLessThan(5000);
    expect(third.exitCode, third.stderr).toBe(0);
    expect((JSON.parse(third.stdout) as { roots: unknown }).roots).toEqual([{ rootdir: p.mount, rootfs: p.pool, jobs: [], counts: {} }]);
    // Made after the first sweep looked and after the third gave up its turn: the second converts it.
    await mkdir(join(p.mount, 'late'));
    await writeFile(join(p.mount, 'late', 'f'), 'late\n');
    expect((await datasets(p.pool)).map((d) => d.name)).toEqual([p.pool]);
    holder.kill('SIGTERM');
    await holder;
    const [a, b] = await Promise.all([first, second]);
    expect(a.exitCode, String(a.stderr)).toBe(0);
    expect(b.exitCode, String(b.stderr)).toBe(0);
    const [sa] = (JSON.parse(String(a.stdout)) as { roots: Summary[] }).roots;
    const [sb] = (JSON.parse(String(b.stdout)) as { roots: Summary[] }).roots;
    expect(sa!.jobs).toEqual([{ name: 'slow', outcome: 'converted', message: expect.any(String) }]);
    expect(sb!.jobs).toEqual([{ name: 'late', outcome: 'converted', message: expect.any(String) }]);
    const live = (await datasets(p.pool))
      .filter((d) => d.state === 'live')
      .map((d) => d.name)
      .sort();
    expect(live).toEqual([`${p.pool}/late`, `${p.pool}/slow`]);
  });
});
