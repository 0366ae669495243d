/**
 * Progress and metrics through the real CLI on a real pool.
 *
 * On a terminal (a pseudo-terminal here): one live line per job, redrawn in place, that says
 * what it waits for and since when, and during the copy the files and bytes copied of the
 * totals; log lines still print, above it; nothing of it is left at the end. Not on a terminal:
 * the usual lines only, no control sequence at all.
 *
 * The Prometheus textfile (config metrics.textfile): each run counts its outcome, files, bytes
 * and duration, in the exposition format; concurrent `handle` processes lose no increment; the
 * daemon's gauges show its jobs while it runs.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, cli, cliEnv, cliSpawn, createPool, datasetStates, type TestPool } from '../helpers/zfs.js';
import { runInPty } from '../helpers/pty.js';
import { parseExposition, sampleValue, type Family } from '../helpers/prom.js';
import { scaled } from '../helpers/time.js';

let p: TestPool;
let config: string;
let textfile: string;

const FILES = 300;
const SIZE = 300_000;

const plugins = (quietSeconds: number): unknown[] => [
  'name-filter',
  ['quiet-wait', { quietSeconds, maxWaitSeconds: 60 }],
  'zfs',
  ['rsync', { graceSeconds: 0.5, maxGraceSeconds: 30 }],
];

async function writeConfigFile(name: string, quietSeconds: number): Promise<string> {
  const file = join(p.work, name);
  await writeFile(
    file,
    JSON.stringify({
      stateDir: p.stateDir,
      roots: [{ rootfs: p.pool, rootdir: p.mount, plugins: plugins(quietSeconds) }],
      metrics: { textfile },
    }),
  );
  return file;
}

async function makeRun(name: string, files: number, size: number): Promise<string> {
  const dir = join(p.mount, name, 'sub');
  await mkdir(dir, { recursive: true });
  for (let i = 0; i < files; i++) await writeFile(join(dir, `f${i}`), randomBytes(size));
  return join(p.mount, name);
}

/** The lines a terminal shows in turn: split at every newline and every erase of the live lines. */
function shownLines(output: string): string[] {
  // eslint-disable-next-line no-control-regex
  return output.split(/\r\n|\r\x1b\[2K(?:\x1b\[1A\x1b\[2K)*/).filter((l) => l !== '');
}

async function metrics(): Promise<Map<string, Family>> {
  return parseExposition(await readFile(textfile, 'utf8'));
}

const converted = (m: Map<string, Family>): number | undefined =>
  sampleValue(m, 'zfs_dynamic_creator_conversions_total', { root: p.mount, outcome: 'converted' });

beforeAll(async () => {
  p = await createPool('progress', 512);
  textfile = join(p.work, 'zfs_dynamic_creator.prom');
  config = await writeConfigFile('config.json', 1.5);
});
afterAll(async () => {
  await p?.destroy();
});

describe('progress on a terminal', () => {
  it('shows the wait and the copy live (phase, files, bytes of the totals, rate), log lines above it, nothing left at the end; metrics counted', async () => {
    const dir = await makeRun('p1', FILES, SIZE);
    const r = await runInPty([process.execPath, CLI, '--config', config, 'handle', dir], { env: cliEnv(p.stateDir, { TERM: 'xterm' }) });
    expect(r.exitCode, r.output).toBe(0);
    const lines = shownLines(r.output);
    // The wait: what for, since when (a clock time), how long so far, where it stands.
    expect(
      lines.some((l) => /^p1: waiting for a quiet period since \d\d:\d\d:\d\d \(0:0\d\); quiet for \d of 1\.5 s/.test(l)),
      r.output,
    ).toBe(true);
    // The copy: files and bytes of the totals the wait saw, and a rate.
    const copy = lines.filter((l) =>
      /^p1: migrate\/copy \(\d:\d\d\): \d+ of 300 files, [\d.]+ (?:KiB|MiB)? ?of 85\.8 MiB \(\d+%\), (?:[\d.]+ [KM]iB|\?)\/s/.test(l),
    );
    expect(copy.length, r.output).toBeGreaterThan(0);
    // Other phases and steps show too.
    expect(lines).toContain('p1: provision');
    // The usual log lines are all there, each on a line of its own (the live line erased first).
    expect(lines.some((l) => /^\d{4}-\d\d-\d\dT[\d:.]+[+-]\d\d:\d\d zfs-dynamic-creator: INFO: \[rsync\] \[p1\] copy /.test(l))).toBe(true);
    expect(lines.some((l) => /NOTICE: \[p1\] converted into .*: 300 files, 85\.8 MiB in /.test(l))).toBe(true);
    // Redrawn in place: erase sequences, and never a live line glued to a log line.
    expect(r.output).toContain('\r\x1b[2K');
    expect(lines.filter((l) => l.includes('zfs-dynamic-creator:') && !/^\d{4}-/.test(l))).toEqual([]);
    // Nothing of it left at the end: the last thing written erases the last live line.
    expect(r.output.endsWith('\r\x1b[2K'), JSON.stringify(r.output.slice(-200))).toBe(true);
    expect((await datasetStates(p)).get('p1')).toBe('live');

    const m = await metrics();
    expect(converted(m)).toBe(1);
    expect(sampleValue(m, 'zfs_dynamic_creator_converted_files_total', { root: p.mount })).toBe(FILES);
    expect(sampleValue(m, 'zfs_dynamic_creator_converted_bytes_total', { root: p.mount })).toBe(FILES * SIZE);
    expect(sampleValue(m, 'zfs_dynamic_creator_conversion_duration_seconds_count', { root: p.mount })).toBe(1);
    expect(sampleValue(m, 'zfs_dynamic_creator_conversion_duration_seconds_sum', { root: p.mount })).toBeGreaterThan(1.5);
    expect(sampleValue(m, 'zfs_dynamic_creator_last_success_timestamp_seconds', { root: p.mount })).toBeGreaterThan(
      Date.now() / 1000 - 120,
    );
  });

  it('several jobs at once (reconcile): one line each', async () => {
    await makeRun('m1', 20, 10_000);
    await makeRun('m2', 20, 10_000);
    const r = await runInPty([process.execPath, CLI, '--config', config, 'reconcile'], { env: cliEnv(p.stateDir, { TERM: 'xterm' }) });
    expect(r.exitCode, r.output).toBe(0);
    // A draw of both jobs: two live lines, one after the other, in one frame.
    // One line each, in the order the jobs started (owners take turns: either may be first).
    expect(r.output).toMatch(/m([12]): waiting for a quiet period since [^\r\n]*\r\nm(?!\1)[12]: waiting for a quiet period since /);
    expect(r.output.endsWith('\r\x1b[2K') || r.output.endsWith('\r\n'), JSON.stringify(r.output.slice(-200))).toBe(true);
    expect(r.output).toMatch(/converted +"m1"/);
    expect(converted(await metrics())).toBe(3);
  });
});

describe('progress not on a terminal', () => {
  it('the usual lines only, without a single control sequence', async () => {
    const dir = await makeRun('n1', 50, 10_000);
    const r = await cli(['--config', config, 'handle', dir], { stateDir: p.stateDir });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/NOTICE: \[n1\] converted into .*: 50 files/);
    // eslint-disable-next-line no-control-regex
    expect(r.stderr).not.toMatch(/[\x00-\x09\x0b-\x1f]/);
    expect(r.stderr).not.toContain('waiting for a quiet period since');
    expect(converted(await metrics())).toBe(4);
  });
});

describe('the metrics textfile', () => {
  it('concurrent handle processes (incron) lose no increment; a deferral counts, a skip does not (the fast path of incron)', async () => {
    const names = ['c1', 'c2', 'c3', 'c4'];
    const dirs = await Promise.all(names.map((n) => makeRun(n, 5, 1000)));
    const fast = await writeConfigFile('fast.json', 0.2);
    const results = await Promise.all(dirs.map((d) => cli(['--config', fast, 'handle', d], { stateDir: p.stateDir })));
    for (const r of results) expect(r.exitCode, r.stderr).toBe(0);
    // A directory that never gets quiet in time: deferred (exit 75).
    const impatient = join(p.work, 'impatient.json');
    await writeFile(
      impatient,
      JSON.stringify({
        stateDir: p.stateDir,
        roots: [{ rootfs: p.pool, rootdir: p.mount, plugins: [['quiet-wait', { quietSeconds: 30, maxWaitSeconds: 0.5 }], 'zfs', 'rsync'] }],
        metrics: { textfile },
      }),
    );
    const busy = await makeRun('d1', 1, 10);
    expect((await cli(['--config', impatient, 'handle', busy], { stateDir: p.stateDir })).exitCode).toBe(75);
    // A hidden name: skipped by the name filter, without a lock or a write, so not counted.
    await mkdir(join(p.mount, '.hidden'));
    expect((await cli(['--config', fast, 'handle', join(p.mount, '.hidden')], { stateDir: p.stateDir })).exitCode).toBe(0);

    const m = await metrics();
    expect(converted(m)).toBe(8);
    expect(sampleValue(m, 'zfs_dynamic_creator_conversions_total', { root: p.mount, outcome: 'deferred' })).toBe(1);
    expect(sampleValue(m, 'zfs_dynamic_creator_conversions_total', { root: p.mount, outcome: 'skipped' })).toBeUndefined();
    expect(sampleValue(m, 'zfs_dynamic_creator_conversions_total', { root: p.mount, outcome: 'failed' })).toBe(0);
    expect(sampleValue(m, 'zfs_dynamic_creator_conversion_duration_seconds_count', { root: p.mount })).toBe(8);
    // Every family is ours, announced, typed.
    for (const [name, family] of m) {
      expect(name).toMatch(/^zfs_dynamic_creator_[a-z_]+$/);
      expect(['counter', 'gauge', 'histogram']).toContain(family.type);
    }
  });

  it("shows the daemon's jobs while it runs, and none once it stopped", async () => {
    // Only the directory made below waits: the one deferred above goes.
    await rm(join(p.mount, 'd1'), { recursive: true, force: true });
    const deferredBefore =
      sampleValue(await metrics().catch(() => new Map<string, Family>()), 'zfs_dynamic_creator_conversions_total', {
        root: p.mount,
        outcome: 'deferred',
      }) ?? 0;
    const daemonConfig = await writeConfigFile('daemon.json', 30);
    const daemon = cliSpawn(['--config', daemonConfig, 'watch'], { stateDir: p.stateDir });
    try {
      // Started when it announces the sweep; then a new directory waits out its (long) quiet period.
      const deadline = Date.now() + scaled(60_000);
      let gauges: { up?: number; waiting?: number } = {};
      await sleep(1000);
      await makeRun('w1', 1, 10);
      while (Date.now() < deadline) {
        const m = await metrics().catch(() => undefined);
        const beat = m && sampleValue(m, 'zfs_dynamic_creator_daemon_heartbeat_timestamp_seconds');
        gauges = {
          up: beat !== undefined && beat > 0 ? 1 : 0,
          waiting: m && sampleValue(m, 'zfs_dynamic_creator_jobs', { state: 'waiting' }),
        };
        if (gauges.up === 1 && gauges.waiting === 1) break;
        await sleep(250);
      }
      expect(gauges).toEqual({ up: 1, waiting: 1 });
    } finally {
      daemon.kill('SIGTERM');
      await daemon;
    }
    const m = await metrics();
    expect(sampleValue(m, 'zfs_dynamic_creator_daemon_up')).toBeUndefined();
    expect(sampleValue(m, 'zfs_dynamic_creator_jobs', { state: 'waiting' })).toBe(0);
    // Stopped while it waited: deferred.
    expect(sampleValue(m, 'zfs_dynamic_creator_conversions_total', { root: p.mount, outcome: 'deferred' })).toBe(deferredBefore + 1);
  });
});
