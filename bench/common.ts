/**
 * Shared by the benchmarks: a throwaway pool with a cold cache on demand, the CLI, trees, the
 * tool's config at its shipped plugin list, a child's wall time and peak RSS, and a series of
 * sides that each convert a tree of their own (alternating, cold cache before each timed side).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { createThrowawayPool, destroyThrowawayPool, poolFiles } from '../test/helpers/pool.js';
import { alternate, measured, sample, type Sample } from './series.js';

export { median } from './series.js';

export const CLI = resolve(import.meta.dirname, '..', 'src', 'cli.js');

export type Log = (line: string) => void;

export interface BenchPool {
  readonly pool: string;
  readonly mount: string;
  readonly work: string;
  readonly stateDir: string;
  /**
   * A config with the shipped plugin list (no plugins given), with a plugin list of its own (an
   * array), or with the shipped list and overrides merged into it (an object: { rsync: {...} }).
   */
  config(plugins?: unknown, more?: Record<string, unknown>): Promise<string>;
  /** Export and import the pool, then drop the kernel's caches: the next reads come from disk. */
  coldCache(): Promise<void>;
  destroy(): Promise<void>;
}

export async function benchPool(label: string, sizeMiB: number): Promise<BenchPool> {
  const files = poolFiles(`zdcb${label}${randomBytes(3).toString('hex')}`.slice(0, 24));
  const { pool, mount } = files;
  const work = await mkdtemp(join(tmpdir(), 'zdc-bench-'));
  await createThrowawayPool(files, sizeMiB);
  const stateDir = join(work, 'state');
  let n = 0;
  return {
    pool,
    mount,
    work,
    stateDir,
    async config(plugins, more = {}) {
      const file = join(work, `config${n++}.json`);
      await writeFile(
        file,
        JSON.stringify({ stateDir, roots: [{ rootfs: pool, rootdir: mount, ...(plugins ? { plugins } : {}) }], ...more }),
      );
      return file;
    },
    coldCache: () => coldCache(pool, dirname(files.image), mount),
    async destroy() {
      await destroyThrowawayPool(files);
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** Runs a command, retrying while it says busy (zfs-fuse, a mount just released); any other failure throws. */
async function patiently(file: string, args: readonly string[]): Promise<void> {
  for (let i = 1; ; i++) {
    const r = await execa(file, args, { reject: false });
    if (r.exitCode === 0) return;
    if (i >= 30 || !/busy/i.test(String(r.stderr))) throw new Error(`${file} ${args.join(' ')}: ${String(r.stderr).trim()}`);
    await sleep(1000);
  }
}

/**
 * A cold cache: the pool exported and imported from its image's directory (ZFS's own cache of it
 * goes), then `sync` and drop_caches (the page cache, the image file's included).
 */
export async function coldCache(pool: string, imageDir: string, mount: string): Promise<void> {
  await patiently('zpool', ['export', pool]);
  await patiently('zpool', ['import', '-d', imageDir, pool]);
  const ls = await execa('ls', ['-a', '--', mount], { reject: false, timeout: 60_000 });
  if (ls.exitCode !== 0) throw new Error(`pool ${pool}: its mount ${mount} does not answer after the import`);
  await execa('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3\n');
}

/** Destroys a dataset, retrying while zfs says it is busy (a mount just released). */
export const destroyDataset = (name: string): Promise<void> => patiently('zfs', ['destroy', '-f', name]);

/** `files` files of 4 KiB in directories of 1,000, plus one file of `bigMiB` MiB. */
export function makeTree(dir: string, files: number, bigMiB: number): void {
  mkdirSync(dir, { recursive: true });
  const block = Buffer.alloc(4096);
  for (let i = 0; i < files; i++) {
    const sub = join(dir, `d${Math.floor(i / 1000)}`);
    if (i % 1000 === 0) mkdirSync(sub);
    block.writeUInt32LE(i, 0);
    writeFileSync(join(sub, `f${i}`), block);
  }
  if (bigMiB > 0) {
    const chunk = randomBytes(1024 * 1024);
    const parts = Array.from({ length: bigMiB }, () => chunk);
    writeFileSync(join(dir, 'big.bin'), Buffer.concat(parts));
  }
}

/** The hook a timed Node child is started with: it writes its own peak RSS (KiB) to `out` at exit. */
export async function rssHook(dir: string): Promise<{ hook: string; out: string }> {
  const hook = join(dir, 'rss.cjs');
  const out = join(dir, 'rss');
  await writeFile(
    hook,
    `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, String(process.resourceUsage().maxRSS)));\n`,
  );
  return { hook, out };
}

/**
 * Runs `node args` and returns wall seconds and the Node process's own peak RSS in MiB (read by a
 * preloaded hook at exit: GNU time's figure would be the largest of the process and its children,
 * rsync included). A missing RSS reading is an error.
 */
export async function timedNode(
  args: readonly string[],
  opts: { cwd?: string } = {},
): Promise<{ seconds: number; maxRssMiB: number; exitCode: number; stderr: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'zdc-bench-rss-'));
  try {
    const { hook, out } = await rssHook(dir);
    const started = process.hrtime.bigint();
    const r = await execa(process.execPath, ['--require', hook, ...args], { reject: false, stdin: 'ignore', cwd: opts.cwd ?? '/' });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const kib = Number((await readFile(out, 'utf8').catch(() => '')) || Number.NaN);
    return { seconds, maxRssMiB: measured(kib, 'the peak RSS of the tool') / 1024, exitCode: r.exitCode ?? -1, stderr: String(r.stderr) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Runs a command under GNU time: wall seconds and peak RSS in MiB (the largest of it and its children). */
export async function timed(
  file: string,
  args: readonly string[],
  env?: Record<string, string>,
): Promise<{ seconds: number; maxRssMiB: number; exitCode: number; stderr: string }> {
  const out = join(tmpdir(), `zdc-bench-time-${randomBytes(4).toString('hex')}`);
  const started = process.hrtime.bigint();
  const r = await execa('/usr/bin/time', ['-o', out, '-f', '%M', file, ...args], {
    reject: false,
    ...(env ? { env: { ...process.env, ...env } } : {}),
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const kib = Number((await readFile(out, 'utf8').catch(() => '')).trim().split('\n').pop() || Number.NaN);
  await rm(out, { force: true });
  return { seconds, maxRssMiB: measured(kib, `the peak RSS of ${file}`) / 1024, exitCode: r.exitCode ?? -1, stderr: String(r.stderr) };
}

/** One side of a comparison: it converts the directory it is given (its own tree) and says what else it measured. */
export interface Side {
  readonly name: string;
  /** The timed work; throws when it failed (an exit code, a missing dataset). */
  convert(dir: string, run: number): Promise<Readonly<Record<string, number>> | void>;
  /** After the timed work, untimed: what the next run needs gone (the dataset made). */
  cleanup(dir: string, run: number): Promise<void>;
}

/** The order of making the trees (rotating every second run) and of running the sides (every run) in run `run`. */
export function orders<T>(sides: readonly T[], run: number): { make: T[]; run: T[] } {
  return { make: alternate(sides, Math.floor(run / 2)), run: alternate(sides, run) };
}

/**
 * `runs` runs of every side on trees of their own: each run makes one tree per side (the order of
 * making them alternates, every second run), then runs the sides in alternating order, each after
 * a cold cache, timed with the load before and after (series.ts sample).
 */
export async function pairSeries(o: {
  p: BenchPool;
  runs: number;
  sides: readonly Side[];
  makeTree: (dir: string) => Promise<void> | void;
  label: string;
  log: Log;
}): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let run = 0; run < o.runs; run++) {
    const { make: trees, run: order } = orders(o.sides, run);
    o.log(`${o.label}: run ${run + 1}/${o.runs}, making the trees (${trees.map((s) => s.name).join(', then ')})`);
    for (const s of trees) await o.makeTree(join(o.p.mount, `${s.name}${run}`));
    await execa('sync');
    for (const [i, side] of order.entries()) {
      const dir = join(o.p.mount, `${side.name}${run}`);
      await o.p.coldCache();
      const s = await sample(side.name, run, i, () => side.convert(dir, run));
      samples.push({ ...s, treeOrder: trees.indexOf(side) });
      const extra = Object.entries(s.values ?? {}).map(([k, v]) => `, ${k} ${v.toFixed(1)}`);
      o.log(`  ${side.name} ${s.seconds.toFixed(1)} s${extra.join('')}${s.loaded ? ' (loaded)' : ''}`);
      await side.cleanup(dir, run);
    }
  }
  return samples;
}

/** The tool's settings in a comparison: the shipped plugin list at its defaults, but for these. */
export function toolOverrides(blockCloning: 'off' | 'auto', rsync: Record<string, unknown> = {}): Record<string, Record<string, unknown>> {
  return { 'quiet-wait': { quietSeconds: 0 }, rsync: { graceSeconds: 0, blockCloning, ...rsync } };
}

/**
 * A config with the shipped plugin list and `overrides` merged in, and the plugins with their
 * effective options as `list-plugins --json` gives them (for the result's parameters).
 */
export async function toolConfig(
  p: BenchPool,
  overrides: Record<string, Record<string, unknown>>,
): Promise<{ config: string; plugins: { name: string; options: unknown }[] }> {
  const config = await p.config(overrides);
  const r = await execa(process.execPath, [CLI, '--config', config, 'list-plugins', '--json'], { stdin: 'ignore' });
  const listed = JSON.parse(r.stdout) as { roots: { plugins: { name: string; options: unknown }[] }[] };
  return { config, plugins: listed.roots[0]!.plugins.map(({ name, options }) => ({ name, options })) };
}

/** Throws unless `dataset` exists and is mounted at `dir` (the work of a side was done). */
export async function checkConverted(dataset: string, dir: string): Promise<void> {
  const r = await execa('zfs', ['get', '-H', '-o', 'value', 'mounted,mountpoint', dataset], { reject: false });
  const [mounted, mountpoint] = r.stdout.split('\n');
  if (r.exitCode !== 0 || mounted !== 'yes' || mountpoint !== dir)
    throw new Error(`${dataset} is not mounted at ${dir}: ${r.exitCode === 0 ? r.stdout.replace(/\n/g, ' ') : r.stderr}`);
}

/** The tool converting a directory with `handle`: its exit code checked, its peak RSS measured. */
/** The copy step's seconds, from the tool's NOTICE line ("converted into …: … in T s (copy C s, …)"). */
export function copySeconds(stderr: string): number {
  return measured(Number(/ converted into .* \(copy (\d+(?:\.\d+)?) s\b/.exec(stderr)?.[1]), "the copy's seconds (the tool's NOTICE line)");
}

export function toolSide(name: string, p: BenchPool, config: string): Side {
  return {
    name,
    async convert(dir) {
      const r = await timedNode([CLI, '--config', config, 'handle', dir]);
      if (r.exitCode !== 0) throw new Error(`the tool failed (exit ${r.exitCode}): ${r.stderr.slice(-800)}`);
      await checkConverted(`${p.pool}/${dir.slice(p.mount.length + 1)}`, dir);
      return { maxRssMiB: r.maxRssMiB, copySeconds: copySeconds(r.stderr) };
    },
    cleanup: (dir) => destroyDataset(`${p.pool}/${dir.slice(p.mount.length + 1)}`),
  };
}
