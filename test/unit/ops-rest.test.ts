/** The pure pieces of issue 24's rest: the one human timestamp, the NOTICE line's copy rate, progress lines at 80 columns. */
import { afterEach, describe, expect, it } from 'vitest';
import { humanTime, localTimestamp } from '../../src/core/logger.js';
import { copyMs, summary } from '../../src/core/engine.js';
import type { StepRecord } from '../../src/core/types.js';
import { createLogger } from '../../src/core/logger.js';
import { newProgress, type JobProgress } from '../../src/core/progress.js';
import { fitLine, jobLine } from '../../src/progress/format.js';
import { summaryLines, type SweepSummary } from '../../src/commands/reconcile.js';
import { OUTCOME_KINDS } from '../../src/core/types.js';
import { OUTCOMES } from '../../src/metrics/textfile.js';
import { readFileSync } from 'node:fs';

const tz = process.env.TZ;
afterEach(() => {
  if (tz === undefined) delete process.env.TZ;
  else process.env.TZ = tz;
});

describe("humanTime: the system's local time with its offset", () => {
  it('shows a UTC instant in the local zone with the offset, seconds or milliseconds', () => {
    process.env.TZ = 'Europe/Paris';
    expect(humanTime('2026-12-07T14:05:06.789Z')).toBe('2026-12-07T15:05:06+01:00');
    expect(humanTime(Date.parse('2026-07-01T00:00:00Z'))).toBe('2026-07-01T02:00:00+02:00');
    expect(localTimestamp(new Date('2026-12-07T14:05:06.789Z'))).toBe('2026-12-07T15:05:06.789+01:00');
    process.env.TZ = 'America/St_Johns';
    expect(humanTime(new Date('2026-12-07T14:05:06Z'))).toBe('2026-12-07T10:35:06-03:30');
    process.env.TZ = 'UTC';
    expect(humanTime('2026-12-07T14:05:06Z')).toBe('2026-12-07T14:05:06+00:00');
  });
  it('returns a text that is not a time as it is', () => {
    expect(humanTime('never')).toBe('never');
  });
});

describe("the NOTICE line: wall time and the copy's own rate", () => {
  const at = (s: number): string => new Date(Date.UTC(2026, 11, 7, 14, 0, s)).toISOString();
  const steps: StepRecord[] = [
    { step: 'start', phase: 'provision', state: 'done', at: at(0) },
    { step: 'create', phase: 'provision', state: 'done', at: at(20) },
    { step: 'copy', phase: 'migrate', state: 'done', at: at(21) },
    { step: 'seal', phase: 'migrate', state: 'done', at: at(33) },
    { step: 'remove-original', phase: 'cleanup', state: 'done', at: at(40) },
  ];
  it("takes the copy step's time from the journalled steps", () => {
    expect(copyMs(steps)).toBe(12_000);
    expect(copyMs(steps.slice(0, 3))).toBeUndefined();
    expect(copyMs([])).toBeUndefined();
    expect(copyMs([{ step: 'copy', phase: 'recover', state: 'done', at: at(1) }, steps[3]!])).toBeUndefined();
  });
  it('gives the rate over the copy beside the wall time', () => {
    expect(summary({ files: 20_000, bytes: 336 * 2 ** 20 }, 41_500, 12_000)).toBe(
      ': 20,000 files, 336.0 MiB in 41.5 s (copy 12.0 s, 28.0 MiB/s)',
    );
    expect(summary({ files: 20_000, bytes: 336 * 2 ** 20 }, 42_000)).toBe(': 20,000 files, 336.0 MiB in 42.0 s (8.0 MiB/s)');
  });
});

describe('progress lines at 80 columns keep the rate and the ETA', () => {
  const T0 = new Date(2026, 10, 27, 10, 41, 2).getTime();
  const job = (fields: Partial<JobProgress>): JobProgress =>
    Object.assign(
      newProgress({ rootdir: '/tank/runs', name: 'run42', dryRun: false, log: createLogger([]), phase: 'migrate', startedAt: T0 }),
      fields,
    );
  const copying = (name: string): JobProgress =>
    job({ name, step: 'migrate/copy', stepSince: T0, files: 12_345, totalFiles: 30_000, bytes: 120 * 2 ** 20, totalBytes: 288 * 2 ** 20 });
  const line = (j: JobProgress, now = T0 + 3000): string => fitLine(jobLine(j, now, 41.2 * 2 ** 20, 80), 80);

  it('a short name: whole when it fits, else the step time and the files go first', () => {
    expect(jobLine(copying('run42'), T0 + 3000, 41.2 * 2 ** 20)).toBe(
      'run42: migrate/copy (0:03): 12,345 of 30,000 files, 120 of 288 MiB (41%), 41.2 MiB/s, ETA 0:05',
    );
    const l = line(copying('run42'));
    expect([...l].length).toBeLessThan(80);
    expect(l).toMatch(/41\.2 MiB\/s, ETA 0:05$/);
  });
  it('a long name is cut in its middle first; the rate and the ETA stay', () => {
    const l = line(copying('experiment-2026-11-27-detector-calibration-run-0042-final'));
    expect([...l].length).toBeLessThan(80);
    expect(l).toBe('experiment…0042-final: migrate/copy: 120 of 288 MiB (41%), 41.2 MiB/s, ETA 0:05');
    expect(l).not.toContain('…:');
  });
  it('the grace line keeps its "of N s" at 80 columns', () => {
    const g = job({
      name: 'experiment-2026-11-27-detector-calibration-run-0042-final',
      phase: 'cleanup',
      waiting: { reason: 'grace period', since: T0 },
      note: 'quiet for 3 of 60 s',
    });
    const l = line(g, T0 + 3000);
    expect([...l].length).toBeLessThan(80);
    expect(l).toMatch(/: waiting for grace period.*\(0:03\); quiet for 3 of 60 s$/);
  });
});

describe('--summary: one line per job that is news', () => {
  it('names each job with its root; skips skipped names and refusals said before; a root not swept is a line', () => {
    const summaries: SweepSummary[] = [
      {
        rootdir: '/tank/runs',
        rootfs: 'tank/runs',
        counts: {},
        jobs: [
          { name: 'run1', outcome: 'converted', message: 'converted into tank/runs/run1' },
          { name: '.tmp', outcome: 'skipped', message: 'ignored' },
          { name: 'bad@x', outcome: 'refused', message: 'refused (remembered since …)', remembered: true },
          { name: 'big', outcome: 'refused', message: 'does not fit' },
        ],
      },
      { rootdir: '/tank/other', rootfs: 'tank/other', counts: {}, jobs: [], error: 'locked' },
      { rootdir: '/tank/gone', rootfs: 'tank/gone', counts: {}, jobs: [], gone: { message: 'root "/tank/gone" is gone', first: false } },
    ];
    expect(summaryLines(summaries, false)).toEqual([
      'converted   "/tank/runs/run1": converted into tank/runs/run1',
      'refused     "/tank/runs/big": does not fit',
      'failed      "/tank/other": locked',
    ]);
    expect(summaryLines([summaries[0]!], true)[0]).toBe('would convert "/tank/runs/run1": converted into tank/runs/run1');
    expect(summaryLines([], false)).toEqual([]);
  });
});

describe('one outcome vocabulary, documented once', () => {
  it("docs/operating.md's table has every outcome word, and the metrics count them by the same words", () => {
    const doc = readFileSync(new URL('../../docs/operating.md', import.meta.url), 'utf8');
    const section = doc.slice(doc.indexOf('## Outcomes'), doc.indexOf('## Reading `status`'));
    const rows = [...section.matchAll(/^\| `([a-z-]+)` \|/gm)].map((m) => m[1]);
    expect(rows.sort()).toEqual([...OUTCOME_KINDS].sort());
    expect([...OUTCOMES].sort()).toEqual(OUTCOME_KINDS.filter((k) => k !== 'refused' && k !== 'skipped' && k !== 'waiting').sort());
  });
});
