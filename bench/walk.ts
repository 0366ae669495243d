/**
 * Micro-benchmark (not a test): walking trees of 20,000 and 200,000 files with the descriptor-based
 * walk of src/util/safefs.ts (bounded parallelism) against a sequential walk, time and peak RSS,
 * each variant in its own process, medians of alternating runs; and removing a tree with
 * removeTree against `rm -rf`.
 *
 *   node dist/bench/walk.js [--sizes 20000,200000] [--runs 3] [--dir /var/tmp] [--zfs] [--no-remove]
 *
 * walk-N: walk with concurrency N; walksync-N: the same with syncStat; digest-N: treeDigest.
 * --zfs makes a throwaway zfs-fuse pool (a file under /var/tmp) and walks trees on it instead.
 * Caches are warm (each variant runs once before the measured runs).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { openDir, removeTree, treeDigest, walk } from '../src/util/safefs/index.js';
import { treeFingerprint } from '../src/util/tree.js';
import { createThrowawayPool, destroyThrowawayPool, poolFiles, type PoolFiles } from '../test/helpers/pool.js';

interface One {
  seconds: number;
  entries: number;
  maxRssMiB: number;
}

/** Child mode: one measurement, printed as JSON. */
async function one(mode: string, root: string): Promise<One> {
  const started = process.hrtime.bigint();
  let entries = 0;
  if (mode === 'noop') {
    // the process alone
  } else if (mode === 'sequential-path') {
    await treeFingerprint(root);
  } else if (mode.startsWith('walk-') || mode.startsWith('walksync-') || mode.startsWith('digest-')) {
    const concurrency = Number(mode.split('-')[1]);
    const d = await openDir(root);
    try {
      if (mode.startsWith('digest-')) entries = (await treeDigest(d, { concurrency })).entries;
      else entries = (await walk(d, () => undefined, { concurrency, syncStat: mode.startsWith('walksync-') })).entries;
    } finally {
      await d.close();
    }
  } else if (mode === 'remove' || mode === 'remove-sync') {
    const parent = join(root, '..');
    const name = root.slice(parent.length + 1);
    const st = await stat(root);
    const p = await openDir(parent);
    try {
      entries = (await removeTree(p, name, { dev: st.dev, ino: st.ino }, { syncStat: mode === 'remove-sync' })).removed;
    } finally {
      await p.close();
    }
  } else if (mode === 'rm-rf') {
    await execa('rm', ['-rf', '--', root]);
  } else {
    throw new Error(`unknown mode ${mode}`);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { seconds, entries, maxRssMiB: process.resourceUsage().maxRSS / 1024 };
}

function makeTree(root: string, files: number): void {
  // 100 files a directory, directories two levels deep (like instrument run folders).
  const perDir = 100;
  const dirs = Math.ceil(files / perDir);
  const perTop = Math.ceil(Math.sqrt(dirs));
  let made = 0;
  for (let d = 0; d < dirs; d++) {
    const dir = join(root, `top${Math.floor(d / perTop)}`, `run${d}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < perDir && made < files; f++, made++) writeFileSync(join(dir, `file${f}.dat`), '');
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function measure(mode: string, root: string, env: Record<string, string> = {}): Promise<One> {
  const r = await execa(process.execPath, [import.meta.filename, '--one', mode, root], { env: { ...process.env, ...env } });
  return JSON.parse(r.stdout) as One;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  if (args[0] === '--one') {
    process.stdout.write(JSON.stringify(await one(args[1]!, args[2]!)));
    return;
  }
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const sizes = (opt('--sizes') ?? '20000,200000').split(',').map(Number);
  const runs = Number(opt('--runs') ?? 3);
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  let baseDir = opt('--dir') ?? '/var/tmp';
  let pool: PoolFiles | undefined;
  if (args.includes('--zfs')) {
    pool = poolFiles(`zdcwalk${randomBytes(3).toString('hex')}`);
    await createThrowawayPool(pool, 2048);
    baseDir = pool.mount;
    log(`zfs-fuse pool ${pool.pool} at ${baseDir}`);
  }
  const work = await mkdtemp(join(baseDir, 'zdc-walk-'));
  const variants: [string, Record<string, string>][] = [
    ['sequential-path', {}],
    ['walk-1', {}],
    ['walk-4', {}],
    ['walk-32', {}],
    ['walk-32', { UV_THREADPOOL_SIZE: '16' }],
    ['walksync-1', {}],
    ['walksync-32', {}],
    ['digest-32', {}],
  ];
  const label = ([m, env]: [string, Record<string, string>]): string =>
    env.UV_THREADPOOL_SIZE ? `${m} (UV_THREADPOOL_SIZE=${env.UV_THREADPOOL_SIZE})` : m;
  const rows: Record<string, unknown>[] = [];
  try {
    const noop = await measure('noop', work);
    log(`node process alone: peak RSS ${noop.maxRssMiB.toFixed(1)} MiB`);
    for (const files of sizes) {
      const root = join(work, `tree${files}`);
      const t0 = Date.now();
      makeTree(root, files);
      log(`tree of ${files} files made in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
      const results = new Map<string, One[]>();
      for (const v of variants) await measure(v[0], root, v[1]); // warm-up
      for (let r = 0; r < runs; r++) {
        for (const v of variants) {
          const m = await measure(v[0], root, v[1]);
          const list = results.get(label(v)) ?? [];
          list.push(m);
          results.set(label(v), list);
        }
      }
      const base = median(results.get('sequential-path')!.map((m) => m.seconds));
      for (const [name, list] of results) {
        const row = {
          files,
          variant: name,
          medianSeconds: Number(median(list.map((m) => m.seconds)).toFixed(3)),
          vsSequential: Number((median(list.map((m) => m.seconds)) / base).toFixed(2)),
          peakRssMiB: Number(Math.max(...list.map((m) => m.maxRssMiB)).toFixed(1)),
          entries: list[0]!.entries,
          runs: list.map((m) => Number(m.seconds.toFixed(3))),
        };
        rows.push(row);
        log(
          `${String(files).padStart(7)} files  ${name.padEnd(44)} ${row.medianSeconds.toFixed(3).padStart(8)} s  x${row.vsSequential.toFixed(2)}  peak RSS ${row.peakRssMiB} MiB`,
        );
      }
      if (!args.includes('--no-remove')) {
        const times: Record<string, number[]> = { remove: [], 'remove-sync': [], 'rm-rf': [] };
        for (let r = 0; r < runs; r++) {
          for (const mode of Object.keys(times)) {
            const copy = join(work, `copy${files}`);
            await execa('cp', ['-a', '--', root, copy]);
            const m = await measure(mode, copy);
            times[mode]!.push(m.seconds);
          }
        }
        for (const [mode, list] of Object.entries(times)) {
          rows.push({ files, variant: mode, medianSeconds: Number(median(list).toFixed(3)), runs: list.map((x) => Number(x.toFixed(3))) });
          log(
            `${String(files).padStart(7)} files  ${`removal: ${mode === 'remove' ? 'removeTree' : mode === 'remove-sync' ? 'removeTree (syncStat)' : 'rm -rf'}`.padEnd(44)} ${median(list).toFixed(3).padStart(8)} s`,
          );
        }
      }
      await rm(root, { recursive: true, force: true });
    }
  } finally {
    await rm(work, { recursive: true, force: true });
    if (pool) await destroyThrowawayPool(pool);
  }
  process.stdout.write(
    `${JSON.stringify({ machine: `${(await execa('nproc')).stdout} cores, node ${process.version}`, base: baseDir, rows }, null, 2)}\n`,
  );
}

await main();
