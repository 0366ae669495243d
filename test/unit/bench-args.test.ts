/**
 * The benchmarks' pure logic: the command line of `npm run bench` (defaults: 5 runs, 200,000
 * files for large, bench/results), and the order of a pair series (each side first as often, and
 * each side's tree made first as often, in every combination over four runs).
 */
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../bench/bench.js';
import { copySeconds, orders } from '../../bench/common.js';
import { RESULTS_DIR } from '../../bench/series.js';

describe('npm run bench arguments', () => {
  it('defaults to 5 runs of the scenarios that run on zfs-fuse, into bench/results', () => {
    const a = parseArgs([]);
    expect(a).toEqual({
      only: ['convert', 'large', 'burst', 'startup', 'sweep'],
      runs: 5,
      largeFiles: 200_000,
      sweepDatasets: 10_000,
      smallFiles: 20_000,
      bigMiB: 256,
      cloneRows: ['clone-1g', 'clone-20k'],
      out: RESULTS_DIR,
    });
  });

  it('takes scenarios and options, and refuses what it does not know', () => {
    const a = parseArgs(['clone', '--runs', '7', '--large-files', '1000', '--out', '/tmp/x', 'convert']);
    expect(a.only).toEqual(['clone', 'convert']);
    expect([a.runs, a.largeFiles, a.out]).toEqual([7, 1000, '/tmp/x']);
    expect(() => parseArgs(['--runs', '0'])).toThrow(/--runs needs a whole number/);
    expect(() => parseArgs(['--runs'])).toThrow(/--runs/);
    expect(() => parseArgs(['fast'])).toThrow(/unknown argument "fast"/);
  });
});

describe('pair series order', () => {
  it('rotates the sides every run and the making of the trees every second run', () => {
    const seen = [0, 1, 2, 3].map((run) => orders(['tool', 'seed'], run));
    expect(seen.map((o) => o.run[0])).toEqual(['tool', 'seed', 'tool', 'seed']);
    expect(seen.map((o) => o.make[0])).toEqual(['tool', 'tool', 'seed', 'seed']);
    // every combination of (goes first, its tree made first) once in four runs
    const combos = new Set(seen.map((o) => `${o.run[0]}:${o.make[0]}`));
    expect(combos.size).toBe(4);
  });
});

describe("the copy's seconds of a tool sample", () => {
  it("comes from the tool's NOTICE line, and is an error when the line is missing", () => {
    const notice =
      '2026-12-07T23:56:46.921+00:00 zfs-dynamic-creator: NOTICE: [run1] converted into p/run1: 20,001 files, 334.1 MiB in 41.1 s (copy 21.8 s, 15.3 MiB/s)\n';
    expect(copySeconds(`INFO: something\n${notice}`)).toBe(21.8);
    expect(() => copySeconds('INFO: copy 3 s\n')).toThrow(/missing measurement: the copy's seconds/);
  });
});
