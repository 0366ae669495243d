/**
 * Never lose a byte, part 3: no space, two processes at once, a dataset that stays busy.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { cliSpawn, createPool, datasets, fastPlugins, type TestPool } from '../helpers/zfs.js';
import { describeTree, makeTree } from '../helpers/tree.js';
import { leftovers, run, stagingPath, writeNamedConfig } from './safety-helpers.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('limits', 128);
});
afterAll(async () => {
  await p?.destroy();
});

const names = async (): Promise<string[]> => (await datasets(p.pool)).map((d) => d.name);

describe('no space', () => {
  it('a quota smaller than the tree: exit 1, says why, the original intact, no dataset left', async () => {
    const dir = join(p.mount, 'over-quota');
    await makeTree(dir, 50, 100_000);
    const before = await describeTree(dir, { mtimes: true });
    const config = await writeNamedConfig(p, 'quota.json', fastPlugins({ zfs: { properties: { quota: '1M' } } }));
    const r = await run(['--config', config, 'handle', dir], p.stateDir);
    expect(r.exitCode).toBe(1);
    const last = r.stderr.trim().split('\n').at(-1)!;
    // The quota is set at the commit; a copy that would not fit it is refused before it starts.
    expect(last).toMatch(
      /provision failed: "over-quota" does not fit: its files take \d+\.\d MiB on disk and the new dataset's quota is 1M/,
    );
    expect(last).toContain('rolled back');
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    expect(await names()).not.toContain(`${p.pool}/over-quota`);
    expect(await leftovers(p)).toEqual([]);
  });

  it('a pool filled up during the copy: exit 1, says why, the original intact, no dataset left', async () => {
    const dir = join(p.mount, 'too big');
    await makeTree(dir, 40, 1_000_000);
    const before = await describeTree(dir, { mtimes: true });
    // Fill the pool so that less than the tree's 40 MB is left.
    const avail = Number((await execa('zfs', ['get', '-H', '-p', '-o', 'value', 'available', p.pool])).stdout);
    const filler = join(p.mount, 'filler.bin');
    await execa('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M', `count=${Math.max(1, Math.floor(avail / 1_048_576) - 20)}`, 'status=none']);
    const config = await writeNamedConfig(p, 'full.json', fastPlugins());
    const r = await run(['--config', config, 'handle', dir], p.stateDir);
    await execa('rm', ['-f', filler]);
    expect(r.exitCode).toBe(1);
    const last = r.stderr.trim().split('\n').at(-1)!;
    // Refused before the copy when ZFS already counts the filler (it counts writes seconds late), or by the copy.
    expect(last).toMatch(
      /migrate failed: copy failed: no space left: .*No space left on device|provision failed: "too big" does not fit: .* available; nothing was copied/,
    );
    expect(last).toContain('rolled back');
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    expect(await names()).not.toContain(`${p.pool}/too big`);
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('two invocations for the same directory at once', () => {
  it('one converts it, the other returns cleanly', async () => {
    const dir = join(p.mount, 'twice');
    await makeTree(dir, 30, 5000);
    const before = await describeTree(dir, { mtimes: true });
    const config = await writeNamedConfig(p, 'twice.json', fastPlugins());
    const [a, b] = await Promise.all([
      run(['--config', config, 'handle', dir], p.stateDir),
      run(['--config', config, 'handle', dir], p.stateDir),
    ]);
    expect([a.exitCode, b.exitCode]).toEqual([0, 0]);
    const said = [a.stderr, b.stderr];
    expect(said.filter((s) => s.includes('converted into'))).toHaveLength(1);
    expect(said.filter((s) => /another zfs-dynamic-creator process is handling this directory|already a filesystem/.test(s))).toHaveLength(
      1,
    );
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/twice`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });

  it('ten at once: exactly one converts', async () => {
    const dir = join(p.mount, 'ten');
    await makeTree(dir, 10, 5000);
    const config = await writeNamedConfig(p, 'ten.json', fastPlugins());
    const all = await Promise.all(Array.from({ length: 10 }, () => run(['--config', config, 'handle', dir], p.stateDir)));
    expect(all.map((r) => r.exitCode)).toEqual(Array(10).fill(0));
    expect(all.filter((r) => r.stderr.includes('converted into'))).toHaveLength(1);
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('a dataset that is busy', () => {
  /** A process whose working directory is `dir`, until killed. */
  function holdCwd(dir: string) {
    const child = execa('sleep', ['600'], { cwd: dir, reject: false });
    onTestFinished(() => {
      child.kill('SIGKILL');
    });
    return child;
  }

  async function waitForMount(name: string): Promise<void> {
    for (let i = 0; i < 200; i++) {
      if ((await datasets(p.pool)).some((d) => d.name === `${p.pool}/${name}` && d.mounted === 'yes')) return;
      await sleep(50);
    }
    throw new Error(`${name} never mounted`);
  }

  it('rollback retries a destroy that zfs answers "busy" to, and succeeds once the holder leaves', async () => {
    const name = 'busy-then-free';
    const dir = join(p.mount, name);
    await makeTree(dir, 5);
    const before = await describeTree(dir, { mtimes: true });
    const config = await writeNamedConfig(
      p,
      'busy1.json',
      fastPlugins({ more: [['fault-injection', { killAt: 'migrate', when: 'after', action: 'fail', pauseSeconds: 2 }]] }),
    );
    const job = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    await waitForMount(name);
    const holder = holdCwd(stagingPath(p, name));
    // Let the rollback meet the busy dataset a few times, then let go.
    let log = '';
    job.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
    });
    for (let i = 0; i < 200 && !/try 3 of/.test(log); i++) await sleep(50);
    holder.kill('SIGKILL');
    await holder;
    const r = await job;
    expect(r.exitCode).toBe(1);
    expect(log).toMatch(/zfs destroy .*: dataset is busy .*trying again/);
    expect(log.trim().split('\n').at(-1)).toMatch(/on purpose; rolled back, the original directory is untouched/);
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    expect(await names()).not.toContain(`${p.pool}/${name}`);
    expect(await leftovers(p)).toEqual([]);
  });

  it('when it stays busy: reported clearly, and recover completes once the holder leaves', async () => {
    const name = 'busy-for-long';
    const dir = join(p.mount, name);
    await makeTree(dir, 5);
    const before = await describeTree(dir, { mtimes: true });
    const config = await writeNamedConfig(
      p,
      'busy2.json',
      fastPlugins({
        zfs: { busyAttempts: 3, busyFirstDelayMs: 100 },
        more: [['fault-injection', { killAt: 'migrate', when: 'after', action: 'fail', pauseSeconds: 2 }]],
      }),
    );
    const job = cliSpawn(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    await waitForMount(name);
    const holder = holdCwd(stagingPath(p, name));
    const r = await job;
    expect(r.exitCode).toBe(1);
    expect(String(r.stderr).trim().split('\n').at(-1)).toMatch(
      /rollback failed: .*busy.*the next run for this root, or 'zfs-dynamic-creator recover', tries again/,
    );
    // Nothing lost meanwhile: the original never moved.
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    holder.kill('SIGKILL');
    await holder;
    const rec = await run(['--config', config, 'recover'], p.stateDir);
    expect(rec.exitCode).toBe(0);
    expect(rec.stdout).toMatch(/rolled-back/);
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
    expect(await names()).not.toContain(`${p.pool}/${name}`);
    expect(await leftovers(p)).toEqual([]);
    // And it converts now.
    const again = await run(['--config', config, 'handle', dir], p.stateDir);
    expect(again.exitCode).toBe(0);
    expect(await describeTree(dir, { mtimes: true })).toEqual(before);
  });
});
