/**
 * Progress: sizes, rates, ETAs and durations as they read; the live lines (one per job, cut to
 * the terminal's width, erased and drawn again around log lines); the "still …" lines where
 * there is no terminal; and the job's live state as the core keeps it (phase, step, wait, counts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { JobImpl, newRecord } from '../../src/core/job.js';
import { Journal, jobId } from '../../src/core/journal.js';
import { createLogger } from '../../src/core/logger.js';
import { newProgress, type JobProgress } from '../../src/core/progress.js';
import type { LogRecord, RootContext } from '../../src/core/types.js';
import {
  activityText,
  clockTime,
  countsText,
  eta,
  fitLine,
  formatBytes,
  formatDuration,
  formatRate,
  jobLine,
  RateMeter,
} from '../../src/progress/format.js';
import { LiveLines, MAX_LINES, SHOW_AFTER_MS, eraseLines } from '../../src/progress/live.js';
import { FIRST_MS, Heartbeat, MAX_EVERY_MS } from '../../src/progress/heartbeat.js';
import { copiedItem } from '../../plugins/rsync/copy.js';
import { createHooks } from '../../src/core/hooks.js';
import { withRuns } from '../helpers/runs.js';

const T0 = new Date(2026, 10, 27, 10, 41, 2).getTime();

function progress(fields: Partial<JobProgress> = {}, log = createLogger([])): JobProgress {
  return Object.assign(newProgress({ rootdir: '/tank/runs', name: 'run42', dryRun: false, log, phase: 'migrate', startedAt: T0 }), fields);
}

describe('formatting', () => {
  it('sizes in binary units, three significant digits', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1024)).toBe('1.00 KiB');
    expect(formatBytes(1536)).toBe('1.50 KiB');
    expect(formatBytes(12.34 * 2 ** 20)).toBe('12.3 MiB');
    expect(formatBytes(288 * 2 ** 20)).toBe('288 MiB');
    expect(formatBytes(1023.9 * 2 ** 20)).toBe('1.00 GiB');
    expect(formatBytes(1.2 * 2 ** 30)).toBe('1.20 GiB');
    expect(formatBytes(3 * 2 ** 40)).toBe('3.00 TiB');
    expect(formatBytes(-1)).toBe('?');
    expect(formatBytes(Number.NaN)).toBe('?');
  });

  it('rates, and none before there is one', () => {
    expect(formatRate(41.2 * 2 ** 20)).toBe('41.2 MiB/s');
    expect(formatRate(undefined)).toBe('?/s');
    expect(formatRate(Number.POSITIVE_INFINITY)).toBe('?/s');
  });

  it('durations as m:ss and h:mm:ss, rounded up, capped', () => {
    expect(formatDuration(0)).toBe('0:00');
    expect(formatDuration(0.2)).toBe('0:01');
    expect(formatDuration(7)).toBe('0:07');
    expect(formatDuration(754)).toBe('12:34');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(100 * 3600)).toBe('>99 h');
    expect(formatDuration(-1)).toBe('?');
    expect(clockTime(T0)).toBe('10:41:02');
  });

  it('an ETA only when the total and a rate are known and the total was not passed', () => {
    expect(eta(100, 400, 50)).toBe(6);
    expect(eta(100, undefined, 50)).toBeUndefined();
    expect(eta(100, 400, undefined)).toBeUndefined();
    expect(eta(100, 400, 0)).toBeUndefined();
    expect(eta(500, 400, 50)).toBeUndefined();
  });

  it('a rate over a sliding window, not since the start', () => {
    const meter = new RateMeter(10_000);
    meter.add(0, 0);
    expect(meter.rate(100)).toBeUndefined(); // not half a second yet
    meter.add(1000, 100 * 2 ** 20);
    expect(meter.rate(1000)).toBe(100 * 2 ** 20);
    // Fast for 10 s, then slow for 20 s: the rate is the slow one.
    meter.add(10_000, 1000 * 2 ** 20);
    for (let t = 11_000; t <= 30_000; t += 1000) meter.add(t, 1000 * 2 ** 20 + ((t - 10_000) / 1000) * 2 ** 20);
    expect(meter.rate(30_000)).toBeCloseTo(2 ** 20, -3);
    // Counting starts again (a new pass): old samples are dropped.
    meter.add(31_000, 10);
    expect(meter.rate(31_100)).toBeUndefined();
  });

  it('counts with totals, percentage, rate and ETA', () => {
    const job = { files: 1234, bytes: 120 * 2 ** 20, totalFiles: 3000, totalBytes: 288 * 2 ** 20 };
    expect(countsText(job, 42 * 2 ** 20)).toBe('1,234 of 3,000 files, 120 of 288 MiB (41%), 42.0 MiB/s, ETA 0:04');
    expect(countsText({ ...job, bytes: 512 * 1024 }, undefined)).toBe('1,234 of 3,000 files, 512 KiB of 288 MiB (0%), ?/s');
    // No totals, or a tree that grew past them: no "of", no ETA.
    expect(countsText({ files: 1, bytes: 10, totalFiles: undefined, totalBytes: undefined }, 5)).toBe('1 file, 10 B, 5 B/s');
    expect(countsText({ files: 4000, bytes: 300 * 2 ** 20, totalFiles: 3000, totalBytes: 288 * 2 ** 20 }, 2 ** 20)).toBe(
      '4,000 files, 300 MiB, 1.00 MiB/s',
    );
  });

  it('one line per job: the copy, a wait (what for, since when), a step', () => {
    const copy = progress({
      step: 'migrate/copy',
      stepSince: T0,
      files: 24,
      bytes: 6.87 * 2 ** 20,
      totalFiles: 300,
      totalBytes: 85.8 * 2 ** 20,
    });
    expect(jobLine(copy, T0 + 3000, 10 * 2 ** 20)).toBe(
      'run42: migrate/copy (0:03): 24 of 300 files, 6.87 of 85.8 MiB (8%), 10.0 MiB/s, ETA 0:08',
    );
    const wait = progress({ phase: 'wait', waiting: { reason: 'a quiet period', since: T0 }, note: 'quiet for 4 of 10 s' });
    expect(activityText(wait, T0 + 72_000, undefined)).toBe('waiting for a quiet period since 10:41:02 (1:12); quiet for 4 of 10 s');
    expect(activityText(progress({ phase: 'provision' }), T0, undefined)).toBe('provision');
    // A name is data: a newline in it never breaks the line.
    expect(jobLine(progress({ name: 'a\nb', phase: 'swap' }), T0, undefined)).toBe('a\\nb: swap');
  });

  it('cuts a line to the width of the terminal', () => {
    expect(fitLine('x'.repeat(100), 40)).toBe(`${'x'.repeat(38)}…`);
    expect(fitLine('short', 40)).toBe('short');
  });

  it("counts rsync's itemized files, never its directories or links", () => {
    expect(copiedItem('>f+++++++++ 5000')).toBe(5000);
    expect(copiedItem('hf+++++++++ 6')).toBe(6);
    expect(copiedItem('cd+++++++++ 4096')).toBeUndefined();
    expect(copiedItem('cL+++++++++ 1')).toBeUndefined();
    expect(copiedItem('sending incremental file list')).toBeUndefined();
  });
});

describe('live lines', () => {
  it('one line per job once it has run a moment, at most MAX_LINES, each cut to the width', () => {
    let now = T0;
    const live = new LiveLines({ columns: () => 60, now: () => now });
    const jobs = Array.from({ length: MAX_LINES + 2 }, (_, i) =>
      progress({ name: `run${i}`, phase: 'wait', waiting: i % 2 ? { reason: 'a work slot', since: T0 } : undefined }),
    );
    for (const job of jobs) live.update(job);
    expect(live.lines(now)).toEqual([]); // not yet: a skip ends before it would show
    now += SHOW_AFTER_MS;
    const lines = live.lines(now);
    expect(lines).toHaveLength(MAX_LINES);
    expect(lines[0]).toBe('run0: wait');
    expect(lines[1]).toBe('run1: waiting for a work slot since 10:41:02 (0:01)');
    expect(lines[MAX_LINES - 1]).toBe('… and 3 more job(s): 2 working, 1 waiting');
    for (const line of lines) expect([...line].length).toBeLessThan(60);
    for (const job of jobs) live.end(job);
    expect(live.lines(now)).toEqual([]);
  });

  it('erases exactly what it drew, and redraws after', () => {
    let now = T0 + 1000;
    const live = new LiveLines({ columns: () => 80, now: () => now });
    live.update(progress({ name: 'a' }));
    live.update(progress({ name: 'b' }));
    expect(live.erase()).toBe('');
    expect(live.draw()).toBe('a: migrate\nb: migrate');
    expect(live.erase()).toBe(eraseLines(2));
    expect(eraseLines(2)).toBe('\r\x1b[2K\x1b[1A\x1b[2K');
    expect(live.erase()).toBe(''); // erased already
    now += 1;
  });

  it("the rate follows the job's bytes, from the start of each step", () => {
    let now = T0;
    const live = new LiveLines({ columns: () => 200, now: () => now });
    const job = progress({ step: 'migrate/copy', stepSince: T0, files: 0, bytes: 0, totalBytes: 100 * 2 ** 20, totalFiles: 10 });
    live.update(job);
    for (let i = 1; i <= 4; i++) {
      now += 1000;
      Object.assign(job, { files: i, bytes: i * 10 * 2 ** 20 });
      live.update(job);
    }
    expect(live.lines(now)[0]).toBe('run42: migrate/copy (0:04): 4 of 10 files, 40.0 of 100 MiB (40%), 10.0 MiB/s, ETA 0:06');
  });
});

describe('where there is no terminal', () => {
  it('says what a job is still doing after a minute, then at doubling intervals, and starts over when it does something else', () => {
    let now = T0;
    const records: LogRecord[] = [];
    const beat = new Heartbeat(() => now);
    const job = progress(
      { phase: 'wait', waiting: { reason: 'a quiet period', since: T0 }, note: 'quiet for 0 of 10 s' },
      createLogger([(r) => records.push(r)], { dir: 'run42' }),
    );
    beat.update(job);
    const at = (ms: number): void => {
      now = T0 + ms;
      beat.tick();
    };
    at(FIRST_MS - 1);
    expect(records).toHaveLength(0);
    at(FIRST_MS);
    expect(records.map((r) => [r.level, r.message])).toEqual([
      ['info', 'still waiting for a quiet period since 10:41:02 (1:00); quiet for 0 of 10 s'],
    ]);
    at(FIRST_MS + 2 * FIRST_MS - 1);
    expect(records).toHaveLength(1);
    at(3 * FIRST_MS);
    at(7 * FIRST_MS);
    expect(records).toHaveLength(3);
    // Never more than one a MAX_EVERY_MS.
    at(7 * FIRST_MS + MAX_EVERY_MS);
    at(7 * FIRST_MS + 2 * MAX_EVERY_MS);
    expect(records).toHaveLength(5);
    // The copy now: a new activity, the first line after a minute again.
    Object.assign(job, {
      waiting: undefined,
      phase: 'migrate',
      step: 'migrate/copy',
      stepSince: now,
      files: 10,
      bytes: 2 ** 20,
      totalFiles: 20,
      totalBytes: 2 ** 21,
    });
    beat.update(job);
    const copyStart = now - T0;
    at(copyStart + FIRST_MS);
    expect(records).toHaveLength(6);
    expect(records[5]!.message).toMatch(/^still at migrate\/copy \(1:00\): 10 of 20 files, 1\.00 of 2\.00 MiB \(50%\)/);
    beat.end(job);
    at(copyStart + 100 * FIRST_MS);
    expect(records).toHaveLength(6);
  });
});

describe("the job's live state", () => {
  let stateDir: string | undefined;
  afterEach(async () => {
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it('follows phase, step, waits and counts, and tells its observers', async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'zdc-progress-'));
    const root: RootContext = withRuns(
      { rootfs: 'tank/runs', rootdir: '/tank/runs', log: createLogger([]), dryRun: false, stateDir },
      createHooks(),
    );
    const job = new JobImpl(root, newRecord(root, jobId(root.rootdir, 'd'), 'd'), new Journal(stateDir), new AbortController().signal);
    const seen: string[] = [];
    const update = vi.fn((p: JobProgress) =>
      seen.push(`${p.phase}|${p.step ?? ''}|${p.waiting?.reason ?? ''}|${p.files ?? ''}|${p.totalFiles ?? ''}`),
    );
    job.observers = [
      { update },
      {
        update: () => {
          throw new Error('a broken observer');
        },
      },
    ];
    await job.waiting('a quiet period', async () => {
      job.progress({ totalFiles: 3, totalBytes: 30 });
    });
    await job.enter('migrate');
    await job.step('copy', 'copy', async () => {
      job.progress({ files: 1, bytes: 10 });
      job.progress({ files: 3, bytes: 30 });
    });
    expect(seen).toEqual([
      'filter||a quiet period||',
      'filter||a quiet period||3',
      'filter||||3',
      'migrate||||3',
      'migrate|migrate/copy|||3',
      'migrate|migrate/copy||1|3',
      'migrate|migrate/copy||3|3',
      'migrate||||3', // the step ended: counts gone, totals kept
    ]);
  });
});
