/**
 * Copies that cannot be wedged (issue 19, items 7 and 8), on the real pool, the attacker the
 * unprivileged owner (nobody) of the directory being converted:
 *
 * - a listed file swapped for a FIFO just before rsync opens it (rsync's sender blocks in open(2)
 *   for ever): the watchdog stops the copy, the job is rolled back and reported, the work slot is
 *   freed, and another user's directory is converted;
 * - an 8 GiB sparse file (nothing on disk) stays sparse: converted with the pool's allocation
 *   barely moving;
 * - a directory that would not fit the quota is refused before anything is copied.
 */
import { execa } from 'execa';
import { chown, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { NOBODY, asNobody } from '../helpers/attacker.js';
import { leftovers, helperPath } from '../helpers/state.js';
import { scaled } from '../helpers/time.js';
import { cli, cliSpawn, createPool, datasetStates, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { processesMatching } from './safety-helpers.js';

const pools: TestPool[] = [];
afterAll(async () => {
  for (const p of pools) await p.destroy();
});
// An rsync left blocked on a FIFO (by the code before the watchdog) would keep the pool busy.
afterEach(async () => {
  for (const p of pools) for (const pid of await processesMatching('rsync', p.mount)) process.kill(pid, 'SIGKILL');
});

async function pool(label: string, mb = 256): Promise<TestPool> {
  const p = await createPool(label, mb);
  pools.push(p);
  return p;
}

/** A directory owned by nobody with files of these sizes (random content), owned by nobody. */
async function userDir(dir: string, files: Record<string, number>): Promise<Map<string, Buffer>> {
  await mkdir(dir, { mode: 0o755 });
  await chown(dir, NOBODY, NOBODY);
  const contents = new Map<string, Buffer>();
  for (const [name, size] of Object.entries(files)) {
    const data = randomBytes(size);
    await writeFile(join(dir, name), data);
    await chown(join(dir, name), NOBODY, NOBODY);
    contents.set(name, data);
  }
  return contents;
}

/**
 * Waits until ZFS counts `bytes` in the root's dataset (referenced): its accounting follows
 * writes once they reach the pool (on zfs-fuse many seconds later); the default quiet period,
 * longer than a transaction group, gives it that time. (zfs-fuse's st_blocks never reach a
 * file's length: about 28% of it, which the space check counts as the length.)
 */
async function settled(p: TestPool, _dir: string, bytes: number): Promise<void> {
  const referenced = async (): Promise<number> => Number((await zfs('get', '-H', '-p', '-o', 'value', 'referenced', p.pool)).trim());
  for (const t = Date.now(); (await referenced()) < bytes; await sleep(500)) {
    if (Date.now() - t > scaled(120_000))
      throw new Error(`${p.pool} never counted the ${bytes} bytes written (referenced ${await referenced()})`);
    await execa('sync');
  }
}

async function poolUsed(p: TestPool): Promise<number> {
  return Number((await zfs('get', '-H', '-p', '-o', 'value', 'used', p.pool)).trim());
}

describe('a file swapped for a FIFO cannot wedge the copy', () => {
  it("two directories whose owner swaps a listed file for a FIFO as rsync reaches it: both jobs stopped, rolled back and reported; the slots freed for another user's directory", async () => {
    const p = await pool('fifo');
    const big = 3 << 20;
    for (const name of ['a1', 'a2']) await userDir(join(p.mount, name), { big, z: 1000 });
    const other = await userDir(join(p.mount, 'c'), { data: 5000 });
    // rsync alone (the parallel copy would copy "big" and "z" before rsync starts), slowed down
    // (2 MB/s) so that it is still sending "big" when "z" is swapped: it then opens "z", a FIFO
    // nobody writes to, and blocks there.
    const config = await writeConfig(
      p,
      fastPlugins({ rsync: { stallSeconds: 3, parallelCopy: false, flags: ['-aHAX', '--numeric-ids', '--sparse', '--bwlimit=1000'] } }),
      { watch: { concurrency: 2, maxJobs: 64, sweepIntervalSeconds: 300 } },
    );
    const sweep = cliSpawn(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    let log = '';
    sweep.stderr!.on('data', (c: Buffer) => (log += c.toString()));
    try {
      const swapped = new Set<string>();
      for (const t = Date.now(); swapped.size < 2; await sleep(20)) {
        if (sweep.exitCode !== null || Date.now() - t > scaled(60_000)) throw new Error(`rsync never started on both directories:\n${log}`);
        for (const name of ['a1', 'a2']) {
          if (swapped.has(name)) continue;
          const staging = await readdir(helperPath(p, name)).catch(() => [] as string[]);
          if (!staging.some((n) => n.startsWith('.big.'))) continue;
          const [command, args] = asNobody('sh', ['-c', 'mkfifo "$0/z.new" && mv -f "$0/z.new" "$0/z"', join(p.mount, name)]);
          await execa(command, args);
          swapped.add(name);
        }
      }
      const ended = await Promise.race([sweep, sleep(scaled(90_000)).then(() => undefined)]);
      expect(ended, `the sweep is still running (wedged):\n${log}`).toBeDefined();
    } finally {
      sweep.kill('SIGKILL');
    }
    // Each stuck job stopped after the stall time, with its reason in one line, and rolled back.
    expect(
      log.match(/the copy made no progress for 3 s: rsync was stopped and the job rolled back \(a file swapped for a FIFO/g)?.length,
      log,
    ).toBe(2);
    const states = await datasetStates(p);
    expect(states.get('c'), log).toBe('live');
    expect(states.has('a1') || states.has('a2')).toBe(false);
    // The originals are where they were, as their owner left them.
    for (const name of ['a1', 'a2']) {
      expect((await stat(join(p.mount, name, 'big'))).size).toBe(big);
      expect((await stat(join(p.mount, name, 'z'))).isFIFO()).toBe(true);
    }
    expect(await readFile(join(p.mount, 'c', 'data'))).toEqual(other.get('data'));
    expect(await leftovers(p)).toEqual([]);
    expect(await processesMatching('rsync', p.mount)).toEqual([]);
  });
});

describe('sparse files stay sparse', () => {
  it("an 8 GiB sparse file (nothing on disk) is converted with the pool's allocation barely moving", async () => {
    const p = await pool('sparse');
    const dir = join(p.mount, 's');
    const files = await userDir(dir, { note: 3000 });
    const [command, args] = asNobody('truncate', ['-s', '8G', join(dir, 'huge')]);
    await execa(command, args);
    await execa('zpool', ['sync', p.pool]).catch(() => undefined);
    const before = await poolUsed(p);
    const config = await writeConfig(p, fastPlugins());
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await datasetStates(p)).get('s')).toBe('live');
    const huge = await stat(join(dir, 'huge'));
    expect(huge.size).toBe(8 * 2 ** 30);
    expect(huge.blocks * 512).toBeLessThan(1 << 20);
    expect(await readFile(join(dir, 'note'))).toEqual(files.get('note'));
    // Not a byte of the 8 GiB written out (a few MiB of metadata and the dataset itself).
    expect((await poolUsed(p)) - before).toBeLessThan(16 << 20);
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('a copy that would not fit is refused before it starts', () => {
  it('bigger than the quota the new dataset gets: refused before anything is made or copied, the original untouched', async () => {
    const p = await pool('quota');
    const dir = join(p.mount, 'q');
    const files = await userDir(dir, { a: 4 << 20, b: 4 << 20, c: 4 << 20 });
    await settled(p, dir, 12 << 20);
    const config = await writeConfig(p, fastPlugins({ zfs: { properties: { quota: '8M' } } }));
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(
      /provision failed: "q" does not fit: its files take \d+\.\d MiB on disk and the new dataset's quota is 8M \(the zfs plugin's properties\); nothing was copied/,
    );
    expect(r.stderr).not.toMatch(/\bcreate\b.*staging/);
    expect((await datasetStates(p)).has('q')).toBe(false);
    for (const [name, data] of files) expect(await readFile(join(dir, name))).toEqual(data);
    expect(await leftovers(p)).toEqual([]);
  });
});
