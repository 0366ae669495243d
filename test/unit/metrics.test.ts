/**
 * The Prometheus textfile: counters by root and outcome, bytes and files, a duration histogram,
 * the last success and the daemon's gauges, in the exposition format; kept in the stateDir so
 * that they survive restarts; and concurrent processes (incron's one `handle` per directory)
 * lose no increment (the flock-based lock).
 */
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { validateConfig } from '../../src/core/config.js';
import {
  DURATION_BUCKETS,
  MetricsTextfile,
  OUTCOMES,
  emptyState,
  labelValue,
  metricsStateFile,
  parseState,
  recordOutcome,
  renderMetrics,
  runGauges,
} from '../../src/metrics/textfile.js';
import { RUN_STATES, RunBook, type RunRecord } from '../../src/core/runs.js';
import type { JobProgress } from '../../src/core/progress.js';
import { parseExposition, sampleValue } from '../helpers/prom.js';
import { PROJECT } from '../helpers/zfs.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'zdc-metrics-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const outcome = (kind: (typeof OUTCOMES)[number], durationMs = 1000) => ({ kind, message: kind, durationMs });

describe('the textfile', () => {
  it('is valid exposition text with every family announced, by root and outcome', () => {
    const state = emptyState();
    recordOutcome(state, '/tank/runs', outcome('converted', 12_000), { files: 3, bytes: 3345 }, new Date(1_700_000_000_500));
    recordOutcome(state, '/tank/runs', outcome('converted', 700), { files: 1, bytes: 5 });
    recordOutcome(state, '/tank/runs', outcome('failed'), undefined);
    recordOutcome(state, '/tank/runs', outcome('deferred'), undefined);
    recordOutcome(state, '/tank/runs', outcome('recovered', 99_000_000), { files: 2, bytes: 7 }, new Date(1_700_000_100_000));
    recordOutcome(state, '/odd "root"\\\n', outcome('busy'), undefined);
    recordOutcome(state, '/tank/runs', outcome('skipped'), undefined); // not counted
    const text = renderMetrics(state, () => false);
    const families = parseExposition(text);
    for (const name of families.keys()) expect(name).toMatch(/^zfs_dynamic_creator_[a-z_]+$/);
    expect(families.get('zfs_dynamic_creator_conversions_total')?.type).toBe('counter');
    expect(families.get('zfs_dynamic_creator_conversion_duration_seconds')?.type).toBe('histogram');
    const root = { root: '/tank/runs' };
    expect(sampleValue(families, 'zfs_dynamic_creator_conversions_total', { ...root, outcome: 'converted' })).toBe(2);
    expect(sampleValue(families, 'zfs_dynamic_creator_conversions_total', { ...root, outcome: 'failed' })).toBe(1);
    expect(sampleValue(families, 'zfs_dynamic_creator_conversions_total', { ...root, outcome: 'busy' })).toBe(0);
    expect(sampleValue(families, 'zfs_dynamic_creator_conversions_total', { root: '/odd "root"\\\n', outcome: 'busy' })).toBe(1);
    expect(sampleValue(families, 'zfs_dynamic_creator_conversions_total', { ...root, outcome: 'skipped' })).toBeUndefined();
    // Bytes and files of every success (a recovery finishes a conversion too).
    expect(sampleValue(families, 'zfs_dynamic_creator_converted_files_total', root)).toBe(6);
    expect(sampleValue(families, 'zfs_dynamic_creator_converted_bytes_total', root)).toBe(3357);
    // The histogram: cumulative buckets, +Inf = count, sum in seconds (conversions only).
    const bucket = (le: string): number | undefined =>
      sampleValue(families, 'zfs_dynamic_creator_conversion_duration_seconds_bucket', { ...root, le });
    expect(bucket('1')).toBe(1);
    expect(bucket('5')).toBe(1);
    expect(bucket('15')).toBe(2);
    expect(bucket(String(DURATION_BUCKETS.at(-1)))).toBe(2);
    expect(bucket('+Inf')).toBe(2);
    expect(sampleValue(families, 'zfs_dynamic_creator_conversion_duration_seconds_sum', root)).toBeCloseTo(12.7);
    expect(sampleValue(families, 'zfs_dynamic_creator_conversion_duration_seconds_count', root)).toBe(2);
    expect(sampleValue(families, 'zfs_dynamic_creator_last_success_timestamp_seconds', root)).toBe(1_700_000_100);
    expect(sampleValue(families, 'zfs_dynamic_creator_daemon_up')).toBeUndefined();
    expect(sampleValue(families, 'zfs_dynamic_creator_daemon_heartbeat_timestamp_seconds')).toBe(0);
    expect(sampleValue(families, 'zfs_dynamic_creator_queue_length')).toBe(0);
  });

  it("shows the daemon's gauges only while its process lives", () => {
    const state = emptyState();
    state.daemon = { pid: 4242, queued: 3, working: 2, waiting: 5 };
    state.heartbeat = 1_700_000_000;
    const alive = parseExposition(renderMetrics(state, () => true));
    expect(sampleValue(alive, 'zfs_dynamic_creator_daemon_heartbeat_timestamp_seconds')).toBe(1_700_000_000);
    expect(sampleValue(alive, 'zfs_dynamic_creator_queue_length')).toBe(3);
    expect(sampleValue(alive, 'zfs_dynamic_creator_jobs', { state: 'working' })).toBe(2);
    expect(sampleValue(alive, 'zfs_dynamic_creator_jobs', { state: 'waiting' })).toBe(5);
    const dead = parseExposition(renderMetrics(state, () => false));
    expect(sampleValue(dead, 'zfs_dynamic_creator_queue_length')).toBe(0);
    expect(sampleValue(dead, 'zfs_dynamic_creator_jobs', { state: 'waiting' })).toBe(0);
  });

  it('shows the interrupted jobs of each root, and since when the oldest waits only where there is one', () => {
    const state = emptyState();
    recordOutcome(state, '/tank/runs', outcome('converted'), { files: 1, bytes: 1 });
    const text = renderMetrics(state, () => false, new Map(), new Map([['/tank/other', { count: 2, oldest: 1_700_000_000 }]]));
    const families = parseExposition(text);
    expect(families.get('zfs_dynamic_creator_interrupted_jobs')?.type).toBe('gauge');
    expect(sampleValue(families, 'zfs_dynamic_creator_interrupted_jobs', { root: '/tank/runs' })).toBe(0);
    expect(sampleValue(families, 'zfs_dynamic_creator_interrupted_jobs', { root: '/tank/other' })).toBe(2);
    expect(sampleValue(families, 'zfs_dynamic_creator_oldest_interrupted_job_timestamp_seconds', { root: '/tank/other' })).toBe(
      1_700_000_000,
    );
    expect(sampleValue(families, 'zfs_dynamic_creator_oldest_interrupted_job_timestamp_seconds', { root: '/tank/runs' })).toBeUndefined();
  });

  it('shows the runs of each root by state (every state, 0 included), the oldest waiting run and the oldest stall', () => {
    const run = (rootdir: string, name: string, state: RunRecord['state'], since: string, stalledSince?: string): RunRecord => ({
      version: 1,
      rootdir,
      name,
      state,
      since,
      detectedAt: since,
      ...(stalledSince !== undefined ? { stalledSince } : {}),
      told: [],
    });
    const gauges = runGauges([
      run('/tank/runs', 'a', 'waiting', '2026-01-01T00:00:10.000Z'),
      run('/tank/runs', 'b', 'waiting', '2026-01-01T00:00:05.000Z'),
      run('/tank/runs', 'c', 'stalled', '2026-01-02T00:00:00.000Z', '2026-01-01T00:00:00.000Z'),
      run('/tank/runs', 'd', 'complete', '2026-01-01T00:00:00.000Z'),
      run('/tank/other', 'e', 'converted', '2026-01-01T00:00:00.000Z'),
    ]);
    const state = emptyState();
    recordOutcome(state, '/tank/none', outcome('converted'), { files: 1, bytes: 1 });
    const families = parseExposition(renderMetrics(state, () => false, new Map(), new Map(), gauges));
    expect(families.get('zfs_dynamic_creator_runs')?.type).toBe('gauge');
    const runs = (root: string, state: string): number | undefined => sampleValue(families, 'zfs_dynamic_creator_runs', { root, state });
    expect(RUN_STATES.map((s) => runs('/tank/runs', s))).toEqual([2, 1, 0, 0, 1, 0]);
    expect(RUN_STATES.map((s) => runs('/tank/other', s))).toEqual([0, 0, 0, 1, 0, 0]);
    expect(RUN_STATES.map((s) => runs('/tank/none', s))).toEqual([0, 0, 0, 0, 0, 0]);
    const ts = (name: string, root: string): number | undefined => sampleValue(families, `zfs_dynamic_creator_${name}`, { root });
    expect(ts('oldest_waiting_run_timestamp_seconds', '/tank/runs')).toBe(Date.UTC(2026, 0, 1, 0, 0, 5) / 1000);
    expect(ts('oldest_stalled_run_timestamp_seconds', '/tank/runs')).toBe(Date.UTC(2026, 0, 1) / 1000);
    expect(ts('oldest_waiting_run_timestamp_seconds', '/tank/other')).toBeUndefined();
    expect(ts('oldest_stalled_run_timestamp_seconds', '/tank/other')).toBeUndefined();
    // One series per root and state, whatever the number of runs.
    expect(families.get('zfs_dynamic_creator_runs')?.samples).toHaveLength(3 * RUN_STATES.length);
  });

  it("is written again at a waiting job's end only when its run changed (it stalled), not at each look", async () => {
    const textfile = join(dir, 'm.prom');
    const metrics = new MetricsTextfile(textfile, dir);
    const end = metrics.observer().end!;
    const job = { rootdir: '/r', name: 'run1', dryRun: false } as JobProgress;
    const waiting = { kind: 'waiting' as const, message: 'waiting', durationMs: 1 };
    const book = new RunBook(dir, '/r', { dryRun: false, tell: async () => undefined });
    const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 20));
    await book.note('run1', { kind: 'waiting', note: 'for RTAComplete.txt' });
    await tick(); // the clock's granularity: the file times differ
    await end(job, waiting, {} as never);
    const first = await stat(textfile);
    expect(
      sampleValue(parseExposition(await readFile(textfile, 'utf8')), 'zfs_dynamic_creator_runs', { root: '/r', state: 'waiting' }),
    ).toBe(1);
    await tick();
    await end(job, waiting, {} as never);
    expect((await stat(textfile)).mtimeMs).toBe(first.mtimeMs);
    await book.note('run1', { kind: 'stalled', since: '2026-01-01T00:00:00.000Z', note: 'no marker, not written to for 24 h' });
    await end(job, waiting, {} as never);
    const families = parseExposition(await readFile(textfile, 'utf8'));
    expect(sampleValue(families, 'zfs_dynamic_creator_runs', { root: '/r', state: 'stalled' })).toBe(1);
    expect(sampleValue(families, 'zfs_dynamic_creator_runs', { root: '/r', state: 'waiting' })).toBe(0);
    expect(sampleValue(families, 'zfs_dynamic_creator_oldest_stalled_run_timestamp_seconds', { root: '/r' })).toBe(
      Date.UTC(2026, 0, 1) / 1000,
    );
    // Not counted as an outcome.
    expect(parseState(await readFile(metricsStateFile(dir), 'utf8')).roots['/r']?.outcomes ?? {}).toEqual({});
  });

  it('escapes label values, and reads back its state dropping what is malformed', () => {
    expect(labelValue('a"b\\c\nd')).toBe('a\\"b\\\\c\\nd');
    const state = emptyState();
    recordOutcome(state, '/r', outcome('converted'), { files: 1, bytes: 2 });
    expect(parseState(JSON.stringify(state))).toEqual(state);
    expect(parseState('not json')).toEqual(emptyState());
    expect(
      parseState(
        JSON.stringify({
          version: 1,
          roots: { '/r': { outcomes: { converted: -3, failed: 'x', busy: 2 }, files: 'many', durationBuckets: [1] } },
        }),
      ),
    ).toEqual({
      version: 1,
      roots: {
        '/r': {
          outcomes: { busy: 2 },
          files: 0,
          bytes: 0,
          durationBuckets: DURATION_BUCKETS.map(() => 0),
          durationSum: 0,
          durationCount: 0,
        },
      },
    });
  });

  it('is written atomically, mode 0644, and its counters survive a new process (kept in the stateDir)', async () => {
    const textfile = join(dir, 'zfs_dynamic_creator.prom');
    await new MetricsTextfile(textfile, dir).update((s) => recordOutcome(s, '/r', outcome('converted'), { files: 1, bytes: 10 }));
    // Another process later: a new object, reading the state back.
    await new MetricsTextfile(textfile, dir).update((s) => recordOutcome(s, '/r', outcome('converted'), { files: 2, bytes: 20 }));
    const families = parseExposition(await readFile(textfile, 'utf8'));
    expect(sampleValue(families, 'zfs_dynamic_creator_conversions_total', { root: '/r', outcome: 'converted' })).toBe(2);
    expect(sampleValue(families, 'zfs_dynamic_creator_converted_bytes_total', { root: '/r' })).toBe(30);
    expect((await stat(textfile)).mode & 0o777).toBe(0o644);
    expect((await stat(metricsStateFile(dir))).mode & 0o777).toBe(0o600);
  });

  it('names the file and the key when the textfile cannot be written, and keeps counting', async () => {
    const textfile = join(dir, 'missing', 'm.prom');
    const metrics = new MetricsTextfile(textfile, dir);
    await expect(metrics.update((s) => recordOutcome(s, '/r', outcome('failed'), undefined))).rejects.toThrow(
      `metrics textfile ${textfile} (config metrics.textfile) not written: ENOENT`,
    );
    expect(parseState(await readFile(metricsStateFile(dir), 'utf8')).roots['/r']?.outcomes).toEqual({ failed: 1 });
  });

  it('loses no increment when many processes count at once', async () => {
    const textfile = join(dir, 'm.prom');
    const script = join(dir, 'count.mjs');
    await writeFile(
      script,
      `import { MetricsTextfile, recordOutcome } from ${JSON.stringify(join(PROJECT, 'dist/src/metrics/textfile.js'))};
const m = new MetricsTextfile(process.argv[2], process.argv[3]);
for (let i = 0; i < 5; i++) await m.update((s) => recordOutcome(s, '/r', { kind: 'converted', message: '', durationMs: 1 }, { files: 1, bytes: 1 }));
`,
    );
    const processes = 8;
    await Promise.all(Array.from({ length: processes }, () => execa(process.execPath, [script, textfile, dir])));
    const families = parseExposition(await readFile(textfile, 'utf8'));
    expect(sampleValue(families, 'zfs_dynamic_creator_conversions_total', { root: '/r', outcome: 'converted' })).toBe(processes * 5);
    expect(sampleValue(families, 'zfs_dynamic_creator_converted_files_total', { root: '/r' })).toBe(processes * 5);
  });

  it('the config accepts metrics.textfile, an absolute *.prom path, and names the key otherwise', () => {
    const base = { roots: [{ rootfs: 'tank/runs', rootdir: '/tank/runs' }] };
    expect(
      validateConfig({ ...base, metrics: { textfile: '/var/lib/node_exporter/textfile_collector/zdc.prom' } }, 'c.yaml', []).metrics,
    ).toEqual({
      textfile: '/var/lib/node_exporter/textfile_collector/zdc.prom',
    });
    expect(validateConfig(base, 'c.yaml', []).metrics).toBeUndefined();
    expect(() => validateConfig({ ...base, metrics: { textfile: 'rel.prom' } }, 'c.yaml', [])).toThrow(
      /metrics\.textfile: must be an absolute path/,
    );
    expect(() => validateConfig({ ...base, metrics: { textfile: '/x/zdc.txt' } }, 'c.yaml', [])).toThrow(
      /metrics\.textfile: must end in \.prom/,
    );
    expect(() => validateConfig({ ...base, metrics: { textfile: '/x/a.prom', extra: 1 } }, 'c.yaml', [])).toThrow(/metrics/);
  });
});
