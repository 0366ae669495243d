/**
 * bench/table.ts: the README's table of figures, made from raw results: the newest result of each
 * row, verdicts computed from the figures (issue 22's targets, every run where the target says
 * so), provenance (commit, machine, loaded samples), the markers, and the README in step with
 * bench/results/ (a figure and its source cannot drift).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { seriesResult, type Environment, type Sample, type SeriesResult } from '../../bench/series.js';
import {
  README,
  BEGIN,
  END,
  figure,
  newestPerScenario,
  provenance,
  readResults,
  replaceBetween,
  table,
  targetOf,
  verdict,
} from '../../bench/table.js';

const env = (at: string, commit = 'abcdef1234567890'): Environment => ({
  commit,
  dirty: false,
  at,
  machine: { cpus: 2, model: 'Test CPU', memoryGiB: 8, kernel: '6.1' },
  node: 'v20.19.0',
  zfs: 'zfs-fuse 0.7.2',
});

const s = (side: string, run: number, seconds: number, values?: Record<string, number>, loaded = false): Sample => ({
  side,
  run,
  order: 0,
  seconds,
  loadBefore: [0.5, 0.5, 0.5],
  loadAfter: [loaded ? 5 : 0.5, 0.5, 0.5],
  loaded,
  ...(values ? { values } : {}),
});

function convert(id: string, tool: number[], seed: number[], at = '2026-12-08T00:00:00.000Z', rss = [100, 100, 100]): SeriesResult {
  const samples = [...tool.map((t, i) => s('tool', i, t, { maxRssMiB: rss[i]! })), ...seed.map((t, i) => s('seed', i, t))];
  return seriesResult({ scenario: id, description: 'a conversion', parameters: {}, environment: env(at), samples }, [['tool', 'seed']]);
}

function burst(live: number[], done: number[]): SeriesResult {
  const samples = [...live.map((t, i) => s('live', i, t)), ...done.map((t, i) => s('done', i, t))];
  const parameters = { quietSeconds: 10, graceSeconds: 30 };
  return seriesResult({ scenario: 'burst-watch', description: 'a burst', parameters, environment: env('2026-12-08T00:00:00Z'), samples });
}

describe('bench table', () => {
  it('takes the newest result of each row', () => {
    const old = convert('convert-20k', [10, 10, 10], [10, 10, 10], '2026-12-01T00:00:00.000Z');
    const recent = convert('convert-20k', [9, 9, 9], [10, 10, 10], '2026-12-08T00:00:00.000Z');
    expect(newestPerScenario([recent, old]).get('convert-20k')).toBe(recent);
    expect(newestPerScenario([old, recent]).get('convert-20k')).toBe(recent);
  });

  it('judges the ratio of medians against the target', () => {
    const t = targetOf('convert-20k');
    expect(verdict(convert('convert-20k', [9, 12, 10], [10, 10, 10]), t)).toBe('met');
    expect(verdict(convert('convert-20k', [11, 12, 10.5], [10, 10, 10]), t)).toBe('**not met**');
    expect(verdict(undefined, t)).toBe('');
    expect(verdict(convert('convert-2k', [1], [1]), targetOf('convert-2k'))).toBe('');
  });

  it('wants every run of the large conversion under 200 MiB, and a missing reading is an error', () => {
    const t = targetOf('convert-200k');
    expect(verdict(convert('convert-200k', [10, 10, 10], [10, 10, 10], undefined, [150, 199, 180]), t)).toBe('met');
    expect(verdict(convert('convert-200k', [10, 10, 10], [10, 10, 10], undefined, [150, 201, 180]), t)).toBe('**not met**');
    const missing = convert('convert-200k', [10, 10], [10, 10]);
    const broken = { ...missing, samples: missing.samples.map((x) => ({ ...x, values: {} })) };
    expect(() => verdict(broken, t)).toThrow(/no maxRssMiB/);
  });

  it('wants every burst run within its bounds, not only the median', () => {
    const t = targetOf('burst-watch');
    expect(verdict(burst([15, 16, 39], [45, 46, 99]), t)).toBe('met');
    expect(verdict(burst([15, 16, 41], [45, 46, 47]), t)).toBe('**not met**');
    expect(verdict(burst([15, 16, 17], [45, 46, 101]), t)).toBe('**not met**');
  });

  it('shows medians, min–max, the ratio, values, and marks loaded samples', () => {
    const r = convert('convert-20k', [9, 12, 10], [10, 11, 10], undefined, [100, 120, 110]);
    expect(figure(r)).toBe('tool 10.0 s (9.00–12.0), seed 10.0 s (10.0–11.0); **tool/seed 1.00×**; maxRssMiB 100.0–120.0');
    expect(provenance(r)).toBe(
      '`abcdef1234`, 2026-12-08; 2 × Test CPU, 8 GiB; Node v20.19.0, zfs-fuse 0.7.2; 3 runs; load before 0.5–0.5, after 0.5–0.5',
    );
    const loaded = { ...r, samples: r.samples.map((x, i) => (i === 0 ? { ...x, loaded: true } : x)) };
    expect(provenance(loaded)).toMatch(/\*\*loaded\*\* \(1 of 6 samples\); load before/);
  });

  it('says "not measured yet" for a row without a result, and keeps the rows in order', () => {
    const empty = table([]);
    expect(empty).toContain('| `convert-20k` | not measured yet | tool/seed ≤ 1.0× |  |  |');
    expect(empty.indexOf('convert-20k')).toBeLessThan(empty.indexOf('clone-1g'));
    const more = table([convert('convert-2k', [1], [1])])
      .trimEnd()
      .split('\n');
    expect(more.at(-3)).toMatch(/^\| `convert-2k` \| tool 1\.00 s/);
    expect(more.at(-1)).toBe('- `convert-2k`: a conversion');
  });

  it('replaces only what stands between the markers', () => {
    const text = `before\n${BEGIN}\nold\n${END}\nafter\n`;
    expect(replaceBetween(text, 'new\n')).toBe(`before\n${BEGIN}\nnew\n${END}\nafter\n`);
    expect(() => replaceBetween('no markers', 'x')).toThrow(/markers/);
  });

  it("the README's table is what bench/results/ gives (npm run bench:table)", () => {
    const readme = readFileSync(README, 'utf8');
    expect(readme).toBe(replaceBetween(readme, table(readResults())));
  });
});
