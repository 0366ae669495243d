/**
 * npm run bench: the benchmarks, on real ZFS (a throwaway pool each), printed as they finish,
 * then as a table and as JSON (bench-results.json, or --json FILE). Needs root and a running
 * ZFS (scripts/setup.sh). Not a test: nothing here fails on a slow figure.
 *
 *   npm run bench                          every scenario
 *   npm run bench -- convert burst         only these (convert, large, burst, startup, sweep)
 *   npm run bench -- --runs 3 --large-files 200000
 *
 * Scenarios (issue 10's targets in brackets):
 *   convert  20,000 files of 4 KiB + 256 MiB, tool vs the seed's raw sequence   [ratio <= 1.3]
 *   large    200,000 files of 4 KiB + 256 MiB, the same, and peak RSS           [< 200 MiB]
 *   burst    40 directories with the default waits, through watch and reconcile [live within
 *            quietSeconds + 30 s; done within quietSeconds + graceSeconds + 60 s]
 *   startup  a run that rejects a name, against node -e 0                       [<= 2 times]
 *   sweep    reconcile with nothing to do over 1,000 datasets
 */
import { writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { runBurst } from './burst.js';
import { benchConvert, type ConvertResult } from './convert.js';
import { runStartup } from './startup.js';
import type { SeriesResult } from './series.js';
import { benchSweep, type SweepResult } from './sweep.js';

const SCENARIOS = ['convert', 'large', 'burst', 'startup', 'sweep'] as const;
type Scenario = (typeof SCENARIOS)[number];

interface Results {
  machine: { cpus: number; model: string; memoryGiB: number; node: string; zfs: string };
  at: string;
  convert?: ConvertResult;
  large?: ConvertResult;
  burst?: SeriesResult[];
  startup?: SeriesResult[];
  sweep?: SweepResult;
}

function parseArgs(argv: readonly string[]): { only: Set<Scenario>; runs: number; largeFiles: number; json: string } {
  const only = new Set<Scenario>();
  let runs = 3;
  let largeFiles = 200_000;
  let json = 'bench-results.json';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--runs') runs = Number(argv[++i]);
    else if (a === '--large-files') largeFiles = Number(argv[++i]);
    else if (a === '--json') json = argv[++i]!;
    else if ((SCENARIOS as readonly string[]).includes(a)) only.add(a as Scenario);
    else
      throw new Error(`unknown argument ${JSON.stringify(a)} (scenarios: ${SCENARIOS.join(', ')}; --runs N, --large-files N, --json FILE)`);
  }
  if (!(runs >= 1)) throw new Error('--runs needs a number of at least 1');
  return { only: only.size > 0 ? only : new Set(SCENARIOS), runs, largeFiles, json };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  const { execa } = await import('execa');
  const zfs = await execa('zfs', ['version'], { reject: false }).then((r) =>
    r.exitCode === 0 ? r.stdout.split('\n')[0]! : 'zfs-fuse (no zfs version)',
  );
  const results: Results = {
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model ?? '?',
      memoryGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      zfs,
    },
    at: new Date().toISOString(),
  };
  const rows: [string, string, string][] = [];
  if (args.only.has('convert')) {
    log("convert: 20,000 files of 4 KiB + 256 MiB, tool (waits at their minimum) vs the seed's sequence");
    const r = (results.convert = await benchConvert({ files: 20_000, bigMiB: 256, runs: args.runs, log }));
    rows.push([
      'convert 20k files + 256 MiB',
      `tool ${r.toolMedian.toFixed(1)} s, seed ${r.seedMedian.toFixed(1)} s: ${r.ratio.toFixed(2)}×, ${r.maxRssMiB.toFixed(0)} MiB`,
      '≤ 1.3×',
    ]);
  }
  if (args.only.has('large')) {
    log(`large: ${args.largeFiles} files of 4 KiB + 256 MiB`);
    const r = (results.large = await benchConvert({ files: args.largeFiles, bigMiB: 256, runs: args.runs, log }));
    rows.push([
      `convert ${args.largeFiles / 1000}k files + 256 MiB`,
      `tool ${r.toolMedian.toFixed(1)} s, seed ${r.seedMedian.toFixed(1)} s: ${r.ratio.toFixed(2)}×, ${r.maxRssMiB.toFixed(0)} MiB`,
      '< 200 MiB',
    ]);
  }
  if (args.only.has('burst') || args.only.has('startup')) {
    // Placeholder wiring (i22-ops) until bench.ts takes SeriesResults for every scenario.
    results.burst = args.only.has('burst') ? await runBurst({ runs: args.runs, log }) : [];
    results.startup = args.only.has('startup') ? await runStartup({ runs: args.runs, log }) : [];
    for (const r of [...results.burst, ...results.startup]) {
      const figures = Object.entries(r.summary).map(([side, v]) => `${side} ${v.median.toFixed(3)} s (max ${v.max.toFixed(3)})`);
      rows.push([r.scenario, figures.join(', '), JSON.stringify(r.parameters.targets ?? '')]);
    }
  }
  if (args.only.has('sweep')) {
    log('sweep: reconcile with nothing to do, 1000 datasets and 100 directories the filter skips');
    const r = (results.sweep = await benchSweep({ datasets: 1000, skipped: 100, runs: 5, log }));
    rows.push(['sweep, 1000 datasets, nothing to do', `${r.medianSeconds.toFixed(2)} s, ${r.zfsCalls} zfs calls`, '']);
  }
  await writeFile(args.json, `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const width = [Math.max(8, ...rows.map((r) => r[0].length)), Math.max(6, ...rows.map((r) => r[1].length))];
  process.stdout.write(
    [
      `machine: ${m.cpus} × ${m.model}, ${m.memoryGiB} GiB, Node ${m.node}, ${m.zfs}`,
      `${'scenario'.padEnd(width[0]!)}  ${'median'.padEnd(width[1]!)}  target`,
      ...rows.map((r) => `${r[0].padEnd(width[0]!)}  ${r[1].padEnd(width[1]!)}  ${r[2]}`),
      `(JSON in ${args.json})`,
      '',
    ].join('\n'),
  );
  return 0;
}

process.exitCode = await main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
});
