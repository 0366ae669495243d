/**
 * npm run bench: the benchmarks, on real ZFS (a throwaway pool each), printed as they finish.
 * Needs root and a running ZFS (scripts/setup.sh).
 */
import { benchSweep } from './sweep.js';

async function main(): Promise<number> {
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  log('sweep: reconcile with nothing to do, 1000 datasets and 100 directories the filter skips');
  const r = await benchSweep({ datasets: 1000, skipped: 100, runs: 5, log });
  process.stdout.write(
    [
      `sweep, nothing to do: ${r.datasets} datasets (${r.mounted ? 'mounted' : 'not mounted, each with its directory; BENCH_MOUNTED=1 mounts them'}), ${r.plainSkipped} skipped directories`,
      `  reconcile (whole process): median ${r.medianSeconds.toFixed(2)} s over ${r.runs.length} runs (${r.runs.map((t) => t.toFixed(2)).join(', ')})`,
      `  zfs invocations per sweep: ${r.zfsCalls}`,
      `  (setting up ${r.datasets} datasets took ${r.createSeconds.toFixed(1)} s)`,
      '',
    ].join('\n'),
  );
  return 0;
}

process.exitCode = await main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  return 1;
});
