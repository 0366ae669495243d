/**
 * npm run bench: the benchmarks, on real ZFS (a throwaway pool each). Each row's raw result (every
 * sample, the environment) goes to --out (default bench/results/<row>-<commit>-<time>.json); a
 * table of them is printed, and `npm run bench:table` puts the newest of each row in the README.
 * Needs root and a running ZFS (scripts/setup.sh). Not a test: nothing here fails on a slow figure.
 *
 *   npm run bench                          convert, large, burst, startup, sweep
 *   npm run bench -- convert burst         only these (convert, large, clone, burst, startup, sweep)
 *   npm run bench -- --runs 5 --large-files 200000 --out DIR
 *   npm run bench -- convert --runs 2 --small-files 2000 --big-mib 16 --out /tmp/x   checking the code
 *
 * clone runs on kernel OpenZFS only (bench/clone.ts says how, in the guest); --clone-rows clone-1g
 * runs one of its rows. Targets: issue 22,
 * computed by bench/table.ts.
 */
import { resolve } from 'node:path';
import { runBurst } from './burst.js';
import { runClone } from './clone.js';
import { runConvert } from './convert.js';
import { runStartup } from './startup.js';
import { runSweep, ZFS_FUSE_MOUNTED_MAX } from './sweep.js';
import { RESULTS_DIR, writeResult, zfsVersion, type SeriesResult } from './series.js';
import { figure, provenance, targetOf, verdict } from './table.js';
import type { Log } from './common.js';

export const SCENARIOS = ['convert', 'large', 'clone', 'burst', 'startup', 'sweep'] as const;
type Scenario = (typeof SCENARIOS)[number];
/** What `npm run bench` runs with no scenario named (clone needs the OpenZFS guest). */
const DEFAULT: readonly Scenario[] = ['convert', 'large', 'burst', 'startup', 'sweep'];

export interface Args {
  readonly only: readonly Scenario[];
  readonly runs: number;
  readonly largeFiles: number;
  /** The sweep's datasets (10,000). */
  readonly sweepDatasets: number;
  /** The convert row's files (20,000; smaller only to check the code). */
  readonly smallFiles: number;
  readonly bigMiB: number;
  /** The clone rows to run (default both: clone-1g, clone-20k). */
  readonly cloneRows: readonly string[];
  readonly out: string;
}

const count = (flag: string, text: string | undefined, min: number): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag} needs a whole number of at least ${min}`);
  return n;
};

export function parseArgs(argv: readonly string[]): Args {
  const only: Scenario[] = [];
  const a = {
    runs: 5,
    largeFiles: 200_000,
    sweepDatasets: 10_000,
    smallFiles: 20_000,
    bigMiB: 256,
    cloneRows: ['clone-1g', 'clone-20k'],
    out: RESULTS_DIR,
  };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    if (x === '--runs') a.runs = count(x, argv[++i], 1);
    else if (x === '--large-files') a.largeFiles = count(x, argv[++i], 1);
    else if (x === '--sweep-datasets') a.sweepDatasets = count(x, argv[++i], 1);
    else if (x === '--small-files') a.smallFiles = count(x, argv[++i], 1);
    else if (x === '--big-mib') a.bigMiB = count(x, argv[++i], 0);
    else if (x === '--clone-rows') a.cloneRows = (argv[++i] ?? '').split(',');
    else if (x === '--out') a.out = resolve(argv[++i] ?? '');
    else if ((SCENARIOS as readonly string[]).includes(x)) only.push(x as Scenario);
    else
      throw new Error(
        `unknown argument ${JSON.stringify(x)} (scenarios: ${SCENARIOS.join(', ')}; --runs N, --large-files N, --sweep-datasets N, --small-files N, --big-mib N, --clone-rows ID,ID, --out DIR)`,
      );
  }
  return { ...a, only: only.length > 0 ? only : DEFAULT };
}

/**
 * The sweep rows: 10,000 mounted datasets where the ZFS can mount them; on zfs-fuse (at most 1,000
 * filesystems in all) 10,000 unmounted and the most it can mount.
 */
async function sweepRows(a: Args, log: Log): Promise<SeriesResult[]> {
  const datasets = a.sweepDatasets;
  if (!zfsVersion().startsWith('zfs-fuse') || datasets <= ZFS_FUSE_MOUNTED_MAX)
    return runSweep({ runs: a.runs, log, datasets, mounted: true });
  return [
    ...(await runSweep({ runs: a.runs, log, datasets, mounted: false })),
    ...(await runSweep({ runs: a.runs, log, datasets: ZFS_FUSE_MOUNTED_MAX, mounted: true })),
  ];
}

export function runners(a: Args): Record<Scenario, (log: Log) => Promise<SeriesResult[]>> {
  return {
    convert: (log) => runConvert({ runs: a.runs, files: a.smallFiles, bigMiB: a.bigMiB, log }),
    large: (log) => runConvert({ runs: a.runs, files: a.largeFiles, bigMiB: a.bigMiB, log }),
    clone: (log) => runClone({ runs: a.runs, log, only: a.cloneRows }),
    burst: (log) => runBurst({ runs: a.runs, log }),
    startup: (log) => runStartup({ runs: a.runs, log }),
    sweep: (log) => sweepRows(a, log),
  };
}

/** One line a row, for the terminal. */
export function summaryLine(r: SeriesResult): string {
  const t = targetOf(r.scenario);
  return `${r.scenario}: ${figure(r)}${t ? `; target ${t.text}: ${verdict(r, t)}` : ''}\n    ${provenance(r)}`;
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const log: Log = (line) => void process.stderr.write(`${line}\n`);
  const run = runners(args);
  const lines: string[] = [];
  for (const scenario of args.only) {
    log(`${scenario}: ${args.runs} runs`);
    for (const result of await run[scenario](log)) {
      const file = writeResult(result, args.out);
      lines.push(summaryLine(result), `    raw: ${file}`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

if (process.argv[1] && import.meta.filename === process.argv[1])
  process.exitCode = await main().catch((error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  });
