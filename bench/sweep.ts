/**
 * A sweep with nothing to do: `reconcile` over a root of N datasets (10,000 by default, mounted by
 * default), made one at a time (zfs-fuse wedges on two mounts at once), plus directories the name
 * filter skips. Times the whole process, counts its zfs calls (a shim on PATH), checks its exit
 * code and that it converted nothing. Makes its own throwaway pool and destroys it afterwards.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { jobId } from '../src/core/job-id.js';
import { CLI, benchPool, type BenchPool, type Log } from './common.js';
import { environment, sample, seriesResult, zfsVersion, type Sample, type SeriesResult } from './series.js';

/**
 * zfs-fuse serves at most 1,000 mounted filesystems in all, every pool's (MAX_FILESYSTEMS in its
 * fuse_listener.c): here the 1,020th dataset of a pool failed to mount ("Input/output error"), and
 * the pool then stayed busy until zfs-fuse restarted. Mounted counts above this need kernel OpenZFS.
 */
export const ZFS_FUSE_MOUNTED_MAX = 900;

export interface SweepOptions {
  readonly runs: number;
  readonly log: Log;
  /** Datasets under the root (default 10,000). */
  readonly datasets?: number;
  /** Mount every dataset (default); unmounted: canmount=noauto and a directory of the same name. */
  readonly mounted?: boolean;
  /** Directories the name filter leaves alone: looked at every sweep, never converted (default 100). */
  readonly skipped?: number;
  /** A run record per dataset in the stateDir, as the tool's conversions leave them (default true). */
  readonly runRecords?: boolean;
}

/** A root made for sweeping: its pool, and one `reconcile` of it. */
export interface SweepFixture {
  readonly pool: BenchPool;
  readonly createSeconds: number;
  /** Unmounts every dataset (one command, no deadline: thousands of mounts take minutes), then destroys the pool. */
  destroy(): Promise<void>;
  /**
   * One reconcile (of `cli`, by default this build's; `nodeArgs` before it, e.g. --cpu-prof): wall
   * seconds, zfs calls; throws unless it exited 0 having done nothing.
   */
  reconcile(o?: { cli?: string; nodeArgs?: readonly string[] }): Promise<{ seconds: number; zfsCalls: number; calls: string[] }>;
}

/** Datasets `<pool>/runNNNNN`, made one at a time (mounted, or canmount=noauto with a directory). */
const datasetNames = (count: number): string[] =>
  Array.from({ length: count }, (_, i) => `run${String(i).padStart(String(count - 1).length, '0')}`);

async function makeDatasets(p: BenchPool, count: number, mounted: boolean, log: Log): Promise<void> {
  for (const [i, name] of datasetNames(count).entries()) {
    await execa('zfs', ['create', ...(mounted ? [] : ['-o', 'canmount=noauto']), `${p.pool}/${name}`]);
    if (!mounted) await mkdir(join(p.mount, name));
    if ((i + 1) % 1000 === 0) log(`  ${i + 1} datasets`);
  }
}

/**
 * What a conversion leaves in <stateDir>/runs for each dataset (src/core/runs.ts): a run in state
 * converted, which the default plugins keep (no completion plugin judges it complete).
 */
async function writeRunRecords(p: BenchPool, count: number): Promise<void> {
  const dir = join(p.stateDir, 'runs');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const at = new Date().toISOString();
  for (const name of datasetNames(count)) {
    const run = { version: 1, rootdir: p.mount, name, state: 'converted', since: at, detectedAt: at, convertedAt: at };
    const record = { ...run, dataset: `${p.pool}/${name}`, told: ['run.detected', 'run.converted'] };
    await writeFile(join(dir, `${jobId(p.mount, name)}.json`), `${JSON.stringify(record)}\n`, { mode: 0o600 });
  }
}

/** A shim `zfs` first on PATH that logs its arguments, one call a line. */
async function zfsShim(work: string): Promise<{ bin: string; calls: string }> {
  const real = (await execa('sh', ['-c', 'command -v zfs'])).stdout.trim();
  const bin = join(work, 'bin');
  const calls = join(work, 'zfs-calls.log');
  await mkdir(bin, { recursive: true });
  await writeFile(join(bin, 'zfs'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${calls}'\nexec '${real}' "$@"\n`);
  await chmod(join(bin, 'zfs'), 0o755);
  return { bin, calls };
}

export async function sweepFixture(o: {
  datasets: number;
  mounted: boolean;
  skipped: number;
  runRecords: boolean;
  log: Log;
}): Promise<SweepFixture> {
  if (o.mounted && o.datasets > ZFS_FUSE_MOUNTED_MAX && zfsVersion().startsWith('zfs-fuse')) {
    throw new Error(
      `zfs-fuse mounts at most 1,000 filesystems in all: ${o.datasets} mounted datasets need kernel OpenZFS (on zfs-fuse: at most ${ZFS_FUSE_MOUNTED_MAX} mounted, or unmounted)`,
    );
  }
  // An empty dataset takes about 160 KiB of the pool (6,292 filled 1 GiB).
  const p = await benchPool('sweep', 512 + Math.ceil(o.datasets / 4));
  try {
    o.log(`pool ${p.pool} at ${p.mount}: making ${o.datasets} ${o.mounted ? 'mounted' : 'unmounted'} datasets, one at a time`);
    const started = process.hrtime.bigint();
    await makeDatasets(p, o.datasets, o.mounted, o.log);
    for (let i = 0; i < o.skipped; i++) await mkdir(join(p.mount, `scratch-${i}`));
    if (o.runRecords) await writeRunRecords(p, o.datasets);
    const createSeconds = Number(process.hrtime.bigint() - started) / 1e9;
    const { bin, calls } = await zfsShim(p.work);
    // The shipped plugin list, with a filter that skips the scratch directories.
    const config = await p.config([['name-filter', { exclude: '^scratch-' }], 'quiet-wait', 'zfs', 'rsync', 'syslog']);
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
    return {
      pool: p,
      createSeconds,
      async destroy() {
        const t0 = process.hrtime.bigint();
        const u = await execa('zfs', ['unmount', '-f', p.pool], { reject: false });
        o.log(`  unmounted in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s (exit ${u.exitCode})`);
        await p.destroy();
      },
      async reconcile({ cli = CLI, nodeArgs = [] } = {}) {
        await writeFile(calls, '');
        const t0 = process.hrtime.bigint();
        const r = await execa(process.execPath, [...nodeArgs, cli, '--config', config, '-q', 'reconcile', '--json'], {
          env,
          reject: false,
          stdin: 'ignore',
        });
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        if (r.exitCode !== 0) throw new Error(`reconcile exited ${r.exitCode}: ${String(r.stderr).trim()}`);
        const roots = (JSON.parse(String(r.stdout)) as { roots: { counts: Record<string, number>; error?: string }[] }).roots;
        const counts = roots[0]?.counts ?? {};
        const acted = Object.entries(counts).filter(([k, v]) => k !== 'skipped' && v > 0);
        if (roots[0]?.error !== undefined || acted.length > 0)
          throw new Error(`the sweep had something to do: ${JSON.stringify(roots[0])}`);
        const lines = (await readFile(calls, 'utf8')).split('\n').filter(Boolean);
        return { seconds, zfsCalls: lines.length, calls: lines };
      },
    };
  } catch (error) {
    await p.destroy();
    throw error;
  }
}

export async function runSweep(o: SweepOptions): Promise<SeriesResult[]> {
  const datasets = o.datasets ?? 10_000;
  const mounted = o.mounted ?? true;
  const skipped = o.skipped ?? 100;
  const runRecords = o.runRecords ?? true;
  const f = await sweepFixture({ datasets, mounted, skipped, runRecords, log: o.log });
  try {
    // The first sweep of a root makes its holding directory and state: not what is measured.
    const first = await f.reconcile();
    o.log(`  first reconcile (untimed): ${first.seconds.toFixed(2)} s, ${first.zfsCalls} zfs calls`);
    const samples: Sample[] = [];
    for (let run = 0; run < o.runs; run++) {
      const s = await sample('reconcile', run, 0, async () => {
        const r = await f.reconcile();
        return { zfsCalls: r.zfsCalls };
      });
      o.log(`  reconcile run ${run + 1}: ${s.seconds.toFixed(2)} s, ${s.values?.zfsCalls} zfs calls${s.loaded ? ' (loaded)' : ''}`);
      samples.push(s);
    }
    const mode = mounted ? 'mounted' : 'unmounted';
    return [
      seriesResult({
        scenario: `sweep-${datasets}-${mode}`,
        description: `reconcile with nothing to do (whole process, exit code and "nothing converted" checked, zfs calls counted) over ${datasets} ${mode} datasets made one at a time${runRecords ? ', a run record each (state converted)' : ''}, and ${skipped} directories the name filter skips; shipped plugin list; after one untimed first sweep`,
        parameters: {
          datasets,
          mounted,
          skipped,
          runRecords,
          runs: o.runs,
          createSeconds: f.createSeconds,
          firstSweepSeconds: first.seconds,
        },
        environment: environment(),
        samples,
      }),
    ];
  } finally {
    await f.destroy();
  }
}
