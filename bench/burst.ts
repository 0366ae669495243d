/**
 * A burst of directories (one small file each) at the shipped defaults (the config names only the
 * root: default plugin list, quiet and grace periods, concurrency; read back from the program, not
 * assumed), through `watch` and through `reconcile`, a fresh pool each run, the paths alternating.
 * The clock starts at the first mkdir on both paths (watch: the daemon watches first; reconcile: it
 * starts after the burst). One check, polled, stamps both: "live" when every directory's dataset
 * is mounted at its path past the commit, "done" when, besides, no helper entry and no journal
 * record is left. Then: each directory's file read back from its dataset, the daemon stopped by
 * SIGTERM and reconcile each exited 0. Each run gives two samples: side "live" and side "done".
 */
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { CLI, benchPool, type BenchPool, type Log } from './common.js';
import { alternate, environment, sample, seriesResult, type Sample, type SeriesResult } from './series.js';
import { configSchema } from '../src/core/config.js';
import { HELPER_PREFIX, holdingDir } from '../src/core/places.js';
import { ROOT_CLAIM_FILE } from '../src/core/roots.js';
import { PROP_STATE } from '../plugins/zfs/zfs.js';

export type BurstPath = 'watch' | 'reconcile';

/** The settings a config naming only the root runs with, as the program reads them. */
export interface Shipped {
  readonly plugins: readonly string[];
  readonly quietSeconds: number;
  readonly graceSeconds: number;
  readonly concurrency: number;
}

export async function shippedSettings(config: string): Promise<Shipped> {
  const r = await execa(process.execPath, [CLI, '--config', config, 'list-plugins', '--json']);
  const plugins = (JSON.parse(r.stdout) as { roots: { plugins: { name: string; options: Record<string, unknown> }[] }[] }).roots[0]!
    .plugins;
  const option = (plugin: string, key: string): number => {
    const value = plugins.find((p) => p.name === plugin)?.options[key];
    if (typeof value !== 'number') throw new Error(`missing measurement: ${plugin}'s ${key} in list-plugins --json`);
    return value;
  };
  return {
    plugins: plugins.map((p) => p.name),
    quietSeconds: option('quiet-wait', 'quietSeconds'),
    graceSeconds: option('rsync', 'graceSeconds'),
    concurrency: configSchema.parse(JSON.parse(readFileSync(config, 'utf8'))).watch.concurrency,
  };
}

/** The one check both stamps come from: all mounted at their path past the commit; and nothing of a job left. */
async function check(p: BenchPool, names: readonly string[]): Promise<{ live: boolean; done: boolean }> {
  const r = await execa('zfs', ['list', '-H', '-o', `name,mountpoint,mounted,${PROP_STATE}`, '-r', p.pool]);
  const rows = new Map(r.stdout.split('\n').map((l) => [l.split('\t')[0]!, l.split('\t').slice(1)] as const));
  const live = names.every((n) => {
    const [mountpoint, mounted, state] = rows.get(`${p.pool}/${n}`) ?? [];
    return mountpoint === join(p.mount, n) && mounted === 'yes' && (state === 'swapped' || state === 'live');
  });
  const held = (await readdir(holdingDir(p.mount)).catch(() => [] as string[])).filter((n) => n !== ROOT_CLAIM_FILE);
  const old = (await readdir(p.mount)).filter((n) => n.startsWith(HELPER_PREFIX));
  const journal = await readdir(join(p.stateDir, 'jobs')).catch(() => [] as string[]);
  return { live, done: live && held.length === 0 && old.length === 0 && journal.length === 0 };
}

/** Each directory converted for real: its dataset live at its path, its file there with its content. */
async function verifyConverted(p: BenchPool, names: readonly string[]): Promise<void> {
  const r = await execa('zfs', ['list', '-H', '-o', `name,${PROP_STATE}`, '-r', p.pool]);
  const state = new Map(r.stdout.split('\n').map((l) => l.split('\t') as [string, string]));
  for (const n of names) {
    if (state.get(`${p.pool}/${n}`) !== 'live') throw new Error(`burst: ${n} is not a live dataset (${state.get(`${p.pool}/${n}`)})`);
    if ((await readFile(join(p.mount, n, 'sample.txt'), 'utf8')) !== `${n}\n`) throw new Error(`burst: ${n}'s file is not in its dataset`);
  }
}

/** Polls `check` from the clock's start until done: both stamps in seconds since `started`. */
async function stamps(p: BenchPool, names: readonly string[], started: bigint, via: BurstPath, log: Log) {
  const since = (): number => Number(process.hrtime.bigint() - started) / 1e9;
  let liveSeconds: number | undefined;
  for (;;) {
    const state = await check(p, names);
    const t = since();
    if (state.live && liveSeconds === undefined) {
      liveSeconds = t;
      log(`  ${via}: all ${names.length} live after ${t.toFixed(1)} s`);
    }
    if (state.done) {
      log(`  ${via}: all done after ${t.toFixed(1)} s`);
      return { liveSeconds: liveSeconds!, doneSeconds: t };
    }
    if (t > 3600) throw new Error(`burst via ${via}: not done after an hour`);
    await sleep(250);
  }
}

async function exitCode(child: ResultPromise, what: string): Promise<void> {
  const r = await child;
  if (r.exitCode !== 0) throw new Error(`${what} exited ${r.exitCode ?? r.signal}: ${String(r.stderr).slice(-500)}`);
}

/** Starts the daemon and resolves once it watches (wrapped: awaiting the process itself would wait for its exit). */
async function startWatch(config: string): Promise<{ daemon: ResultPromise }> {
  const daemon = execa(process.execPath, [CLI, '--config', config, 'watch'], { reject: false, stdin: 'ignore' });
  let out = '';
  daemon.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  for (let i = 0; !out.includes('NOTICE: watching '); i++) {
    if (daemon.exitCode !== null || i > 1200) {
      daemon.kill('SIGKILL');
      await daemon;
      throw new Error(`watch did not start: ${out.slice(-500)}`);
    }
    await sleep(50);
  }
  return { daemon };
}

/**
 * One run of one path on a fresh pool: the sample (seconds: the timed window, with liveSeconds and
 * doneSeconds) and the settings its config ran with.
 */
export async function burstRun(o: {
  via: BurstPath;
  directories: number;
  run: number;
  order: number;
  log: Log;
}): Promise<{ sample: Sample; shipped: Shipped }> {
  const p = await benchPool('burst', 1024);
  let daemon: ResultPromise | undefined;
  try {
    const config = await p.config();
    const shipped = await shippedSettings(config);
    const names = Array.from({ length: o.directories }, (_, i) => `project ${String(i).padStart(3, '0')}`);
    if (o.via === 'watch') ({ daemon } = await startWatch(config));
    const s = await sample(o.via, o.run, o.order, async () => {
      const started = process.hrtime.bigint();
      for (const n of names) {
        await mkdir(join(p.mount, n));
        await writeFile(join(p.mount, n, 'sample.txt'), `${n}\n`);
      }
      const reconcile =
        o.via === 'reconcile'
          ? execa(process.execPath, [CLI, '--config', config, '-q', 'reconcile'], { reject: false, stdin: 'ignore' })
          : undefined;
      const times = await stamps(p, names, started, o.via, o.log);
      if (reconcile) await exitCode(reconcile, 'reconcile');
      return times;
    });
    await verifyConverted(p, names);
    if (daemon) {
      daemon.kill('SIGTERM');
      await exitCode(daemon, 'watch (SIGTERM)');
      daemon = undefined;
    }
    return { sample: s, shipped };
  } finally {
    daemon?.kill('SIGKILL');
    await daemon;
    await p.destroy();
  }
}

/** The two samples of a run: its live and done stamps as the seconds of sides "live" and "done". */
function split(s: Sample): Sample[] {
  const v = s.values!;
  return [
    { ...s, side: 'live', seconds: v.liveSeconds! },
    { ...s, side: 'done', seconds: v.doneSeconds! },
  ];
}

/**
 * Rows `burst-watch` and `burst-reconcile`: `runs` runs (at least 3) of each path, alternating
 * which path goes first. Summary sides "live" and "done" (median, min, max); targets in parameters.
 */
export async function runBurst(o: { runs: number; log: Log; directories?: number; via?: BurstPath[] }): Promise<SeriesResult[]> {
  const runs = Math.max(3, o.runs);
  const directories = o.directories ?? 40;
  const paths = o.via ?? ['watch', 'reconcile'];
  const env = environment();
  const samples = new Map<BurstPath, Sample[]>(paths.map((v) => [v, []]));
  const settings = new Set<string>();
  let shipped: Shipped | undefined;
  for (let run = 0; run < runs; run++) {
    const order = alternate(paths, run);
    for (const [i, via] of order.entries()) {
      o.log(`burst: ${directories} directories via ${via}, run ${run + 1} of ${runs}`);
      const r = await burstRun({ via, directories, run, order: i, log: o.log });
      samples.get(via)!.push(...split(r.sample));
      settings.add(JSON.stringify((shipped = r.shipped)));
    }
  }
  if (!shipped || settings.size !== 1) throw new Error(`burst: the runs' settings differ: ${[...settings].join(' / ')}`);
  const targets = { liveSeconds: shipped.quietSeconds + 30, doneSeconds: shipped.quietSeconds + shipped.graceSeconds + 60 };
  return paths.map((via) =>
    seriesResult({
      scenario: `burst-${via}`,
      description:
        `${directories} directories of one file each through ${via} at the shipped defaults (quietSeconds ${shipped.quietSeconds}, ` +
        `graceSeconds ${shipped.graceSeconds}, concurrency ${shipped.concurrency}), a fresh pool each run: seconds from the first mkdir ` +
        'until all are mounted past the commit (live) and until no helper or journal record is left (done), one check for both; ' +
        `verified: each file read back from its dataset, ${via === 'watch' ? 'the daemon exits 0 on SIGTERM' : 'reconcile exits 0'}`,
      parameters: { via, directories, runs, ...shipped, targets, pathOrder: 'alternating, a fresh pool each run' },
      environment: env,
      samples: samples.get(via)!,
    }),
  );
}
