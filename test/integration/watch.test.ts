/** The daemon on a real pool, as a child process: bursts, restarts, SIGTERM mid-job, SIGHUP. */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { jobId } from '../../src/core/journal.js';
import { cliSpawn, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { helperEntries } from '../helpers/state.js';
import { lockPath } from '../../src/core/lock.js';

let p: TestPool;
const WATCH = { concurrency: 4, sweepIntervalSeconds: 300 };

beforeAll(async () => {
  p = await createPool('watch', 512);
});
afterAll(async () => {
  await p?.destroy();
});

interface Daemon {
  readonly output: () => string;
  waitFor(pattern: RegExp | string, timeoutMs?: number): Promise<void>;
  signal(name: NodeJS.Signals): void;
  stop(): Promise<number>;
}

let daemons: Daemon[] = [];
afterEach(async () => {
  // A failed test must not leave a daemon behind.
  await Promise.all(daemons.map((d) => d.stop()));
  daemons = [];
});

async function startDaemon(config: string): Promise<Daemon> {
  const child = cliSpawn(['--config', config, 'watch'], { stateDir: p.stateDir });
  let out = '';
  child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  let exited: number | undefined;
  const result = child.then((r) => (exited = r.exitCode ?? -1));
  const daemon: Daemon = {
    output: () => out,
    async waitFor(pattern, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      const hit = (): boolean => (typeof pattern === 'string' ? out.includes(pattern) : pattern.test(out));
      while (!hit()) {
        if (exited !== undefined) throw new Error(`the daemon exited (${exited}) before ${String(pattern)}:\n${out.slice(-3000)}`);
        if (Date.now() > deadline) throw new Error(`no ${String(pattern)} within ${timeoutMs} ms:\n${out.slice(-3000)}`);
        await sleep(100);
      }
    },
    signal(name) {
      child.kill(name);
    },
    async stop() {
      if (exited === undefined) child.kill('SIGTERM');
      const timeout = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await result;
      clearTimeout(timeout);
      return exited!;
    },
  };
  daemons.push(daemon);
  await daemon.waitFor('NOTICE: watching ');
  return daemon;
}

async function states(): Promise<Map<string, string>> {
  const rows = await datasets(p.pool);
  return new Map(rows.filter((r) => r.name !== p.pool).map((r) => [r.name.slice(p.pool.length + 1), r.state]));
}

async function waitLive(names: readonly string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const now = await states();
    const missing = names.filter((n) => now.get(n) !== 'live');
    if (missing.length === 0) return;
    if (Date.now() > deadline) throw new Error(`not converted after ${timeoutMs} ms: ${missing.slice(0, 10).join(', ')} (${missing.length} in all)`);
    await sleep(500);
  }
}

async function helpersAndJournal(): Promise<string[]> {
  const helpers = await helperEntries(p.mount);
  const journal = await readdir(join(p.stateDir, 'jobs')).catch(() => [] as string[]);
  return [...helpers, ...journal];
}

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
    expect(daemon.output().split('\n').filter((l) => /ERROR|WARN/.test(l))).toEqual([]);
    expect(await daemon.stop()).toBe(0);
    expect(await helpersAndJournal()).toEqual([]);
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
    expect(await helpersAndJournal()).toEqual([]);

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
    // The copy is slowed down (8 MB/s) so that the signal lands in it.
    const slow = fastPlugins({ rsync: { flags: ['-aHAX', '--numeric-ids', '--bwlimit=8M'] } });
    const daemon = await startDaemon(await writeConfig(p, slow, { watch: WATCH }));
    await daemon.waitFor(/\[slow copy\] copy /, 60_000);
    await sleep(1000);
    expect(await daemon.stop()).toBe(0);
    expect(daemon.output()).toMatch(/\[slow copy\] migrate failed: .*rolled back/);
    expect((await states()).has('slow copy')).toBe(false);
    expect(await helpersAndJournal()).toEqual([]);
    expect(sha(await readFile(join(dir, 'big.bin')))).toBe(want);
    expect(await readFile(join(dir, 'small.txt'), 'utf8')).toBe('small\n');

    const again = await startDaemon(await writeConfig(p, fastPlugins(), { watch: WATCH }));
    await waitLive(['slow copy'], 120_000);
    expect(sha(await readFile(join(dir, 'big.bin')))).toBe(want);
    expect(await again.stop()).toBe(0);
    expect(await helpersAndJournal()).toEqual([]);
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
    expect(await helpersAndJournal()).toEqual([]);
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
