/** The daemon on a real pool, as a child process: bursts, restarts, SIGTERM mid-job, SIGHUP. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobId } from '../../src/core/journal.js';
import { createPool, datasetStates, fastPlugins, waitLive as waitLiveIn, writeConfig, type TestPool } from '../helpers/zfs.js';
import { startDaemon as startDaemonOf } from '../helpers/daemon.js';
import { leftovers } from '../helpers/state.js';
import { lockPath } from '../../src/core/lock.js';

let p: TestPool;
const WATCH = { concurrency: 4, sweepIntervalSeconds: 300 };

beforeAll(async () => {
  p = await createPool('watch', 512);
});
afterAll(async () => {
  await p?.destroy();
});

const startDaemon = (config: string) => startDaemonOf(p, config);
const states = () => datasetStates(p);
const waitLive = (names: readonly string[], timeoutMs: number) => waitLiveIn(p, names, timeoutMs);

function sha(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('watch', () => {
  it('converts a burst of 100 new directories, each with its file', async () => {
    const config = await writeConfig(p, fastPlugins(), { watch: WATCH });
    const daemon = await startDaemon(config);
    const names = Array.from({ length: 100 }, (_, i) => `run ${String(i).padStart(3, '0')}`);
    const started = Date.now();
    for (const n of names) {
      await mkdir(join(p.mount, n));
      await writeFile(join(p.mount, n, 'sample.txt'), `${n}\n`);
    }
    await waitLive(names, 240_000);
    const seconds = (Date.now() - started) / 1000;
    for (const n of names) expect(await readFile(join(p.mount, n, 'sample.txt'), 'utf8')).toBe(`${n}\n`);
    // Nothing was left to the sweep: every directory came through inotify.
    expect(
      daemon
        .output()
        .split('\n')
        .filter((l) => /ERROR|WARN/.test(l)),
    ).toEqual([]);
    expect(await daemon.stop()).toBe(0);
    expect(await leftovers(p)).toEqual([]);
    console.log(`watch: 100 directories converted in ${seconds.toFixed(1)} s (concurrency ${WATCH.concurrency})`);
  });

  it('converts directories made while it was stopped, once it starts', async () => {
    const names = ['offline a', 'offline b', 'offline c'];
    for (const n of names) {
      await mkdir(join(p.mount, n));
      await writeFile(join(p.mount, n, 'f'), n);
    }
    const config = await writeConfig(p, fastPlugins(), { watch: WATCH });
    const daemon = await startDaemon(config);
    await waitLive(names, 60_000);
    for (const n of names) expect(await readFile(join(p.mount, n, 'f'), 'utf8')).toBe(n);
    expect(await daemon.stop()).toBe(0);
  });

  it('on SIGTERM while a job waits for quiet: exits 0, the directory untouched; converted after a restart', async () => {
    const dir = join(p.mount, 'slow wait');
    const config = await writeConfig(p, fastPlugins({ quiet: { quietSeconds: 30 } }), { watch: WATCH });
    const daemon = await startDaemon(config);
    await mkdir(dir);
    await writeFile(join(dir, 'f'), 'waiting\n');
    // The job has started once it holds the directory's lock.
    const lock = lockPath(p.stateDir, jobId(p.mount, 'slow wait'));
    for (let i = 0; i < 300 && !existsSync(lock); i++) await sleep(100);
    expect(existsSync(lock)).toBe(true);
    await sleep(500);
    const stoppedAt = Date.now();
    expect(await daemon.stop()).toBe(0);
    expect(Date.now() - stoppedAt).toBeLessThan(20_000);
    expect(daemon.output()).toMatch(/\[slow wait\] deferred: stopped while waiting/);
    expect((await states()).has('slow wait')).toBe(false);
    expect(await readFile(join(dir, 'f'), 'utf8')).toBe('waiting\n');
    expect(await leftovers(p)).toEqual([]);

    const again = await startDaemon(await writeConfig(p, fastPlugins(), { watch: WATCH }));
    await waitLive(['slow wait'], 60_000);
    expect(await readFile(join(dir, 'f'), 'utf8')).toBe('waiting\n');
    expect(await again.stop()).toBe(0);
  });

  it('on SIGTERM during the copy: rolls back (no dataset, no staging, original intact); converted after a restart', async () => {
    const dir = join(p.mount, 'slow copy');
    await mkdir(dir);
    const big = Buffer.alloc(48 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    await writeFile(join(dir, 'big.bin'), big);
    await writeFile(join(dir, 'small.txt'), 'small\n');
    const want = sha(big);
    // The copy is rsync alone, slowed down (8 MB/s) so that the signal lands in it.
    const slow = fastPlugins({ rsync: { parallelCopy: false, flags: ['-aHAX', '--numeric-ids', '--bwlimit=8M'] } });
    const daemon = await startDaemon(await writeConfig(p, slow, { watch: WATCH }));
    await daemon.waitFor(/\[slow copy\] copy /, 60_000);
    await sleep(1000);
    expect(await daemon.stop()).toBe(0);
    // A clean stop, not a failure: at notice, no error line for the job.
    expect(daemon.output()).toMatch(/NOTICE: \[slow copy\] stopped during migrate: .*rolled back/);
    expect(daemon.output()).not.toMatch(/ERROR: \[slow copy\]/);
    expect((await states()).has('slow copy')).toBe(false);
    expect(await leftovers(p)).toEqual([]);
    expect(sha(await readFile(join(dir, 'big.bin')))).toBe(want);
    expect(await readFile(join(dir, 'small.txt'), 'utf8')).toBe('small\n');

    const again = await startDaemon(await writeConfig(p, fastPlugins(), { watch: WATCH }));
    await waitLive(['slow copy'], 120_000);
    expect(sha(await readFile(join(dir, 'big.bin')))).toBe(want);
    expect(await again.stop()).toBe(0);
    expect(await leftovers(p)).toEqual([]);
  });

  it('reloads its config on SIGHUP', async () => {
    const plugins = fastPlugins();
    plugins[0] = ['name-filter', { exclude: '^late' }];
    const config = await writeConfig(p, plugins, { watch: WATCH });
    const daemon = await startDaemon(config);
    await mkdir(join(p.mount, 'late 1'));
    await daemon.waitFor('[late 1] skipped: name matches the exclusion');
    expect((await states()).has('late 1')).toBe(false);

    await writeConfig(p, fastPlugins(), { watch: { concurrency: 2, sweepIntervalSeconds: 300 } });
    daemon.signal('SIGHUP');
    await daemon.waitFor('configuration reloaded');
    // The sweep after the reload converts what the old config skipped; new directories use the new config.
    await mkdir(join(p.mount, 'late 2'));
    await waitLive(['late 1', 'late 2'], 60_000);
    expect(await daemon.stop()).toBe(0);
    expect(await leftovers(p)).toEqual([]);
  });

  it('keeps the old config when the new one is invalid', async () => {
    const config = await writeConfig(p, fastPlugins(), { watch: WATCH });
    const daemon = await startDaemon(config);
    await writeFile(config, '{ "roots": [] }');
    daemon.signal('SIGHUP');
    await daemon.waitFor('configuration not reloaded');
    await mkdir(join(p.mount, 'after bad reload'));
    await writeFile(join(p.mount, 'after bad reload', 'f'), 'x');
    await waitLive(['after bad reload'], 60_000);
    expect(await daemon.stop()).toBe(0);
  });
});
