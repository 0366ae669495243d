/**
 * What every benchmark records, so that a figure can be traced: the environment it ran in (commit,
 * machine, Node, ZFS), each timed sample with the load average before and after it, and the
 * summary of a series (median, min, max of each side; the ratio of the medians). A sample whose
 * load average exceeded the core count is marked loaded. A missing measurement is an error, never 0.
 * Raw results go to bench/results/ (committed for every figure the README states); bench/table.ts
 * makes the README's table from them.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';

export const PROJECT = resolve(import.meta.dirname, '..', ...(/[/\\]dist[/\\]bench$/.test(import.meta.dirname) ? ['..'] : []));
export const RESULTS_DIR = join(PROJECT, 'bench', 'results');

export interface Environment {
  /** The commit the code that ran was built from (dist/build.json), else the checkout's HEAD. */
  readonly commit: string;
  /** Uncommitted changes to tracked files in what was built (or in the checkout). */
  readonly dirty: boolean;
  readonly at: string;
  readonly machine: { readonly cpus: number; readonly model: string; readonly memoryGiB: number; readonly kernel: string };
  readonly node: string;
  readonly zfs: string;
}

function git(args: string[]): string {
  return execFileSync('git', args, { cwd: PROJECT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
}

/** The ZFS in use: `zfs version`'s first line on OpenZFS, zfs-fuse's package version otherwise. */
export function zfsVersion(): string {
  try {
    return execFileSync('zfs', ['version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .split('\n')[0]!
      .trim();
  } catch {
    try {
      return `zfs-fuse ${execFileSync('dpkg-query', ['-W', '-f', '${Version}', 'zfs-fuse'], { encoding: 'utf8' }).trim()}`;
    } catch {
      throw new Error('cannot tell which ZFS this is (no `zfs version`, no zfs-fuse package)');
    }
  }
}

/** The commit the running code was built from (dist/build.json, written by the build), when running from dist. */
function builtFrom(): { commit: string; dirty: boolean } | undefined {
  if (!/[/\\]dist[/\\]bench$/.test(import.meta.dirname)) return undefined;
  const stamp = JSON.parse(readFileSync(join(PROJECT, 'dist', 'build.json'), 'utf8')) as { commit: string | null; dirty: boolean | null };
  if (stamp.commit === null || stamp.dirty === null) throw new Error('dist/build.json names no commit: build from a git checkout');
  return { commit: stamp.commit, dirty: stamp.dirty };
}

export function environment(): Environment {
  const cpu = cpus();
  const built = builtFrom();
  return {
    commit: built?.commit ?? git(['rev-parse', 'HEAD']),
    dirty: built?.dirty ?? git(['status', '--porcelain', '--untracked-files=no']) !== '',
    at: new Date().toISOString(),
    machine: { cpus: cpu.length, model: cpu[0]?.model ?? 'unknown', memoryGiB: Math.round(totalmem() / 2 ** 30), kernel: release() },
    node: process.version,
    zfs: zfsVersion(),
  };
}

export type Load = readonly [number, number, number];

export const load = (): Load => loadavg() as unknown as Load;

export interface Sample {
  /** Which side of the comparison (e.g. "tool", "seed"). */
  readonly side: string;
  /** The run of the series, from 0. */
  readonly run: number;
  /** Its place in the run: 0 when it went first. */
  readonly order: number;
  readonly seconds: number;
  readonly loadBefore: Load;
  readonly loadAfter: Load;
  /** Load average (1 min) above the core count before or after. */
  readonly loaded: boolean;
  /** In a series of sides on trees of their own: the place of this side's tree in the run's making (0: made first). */
  readonly treeOrder?: number;
  /** Further measurements of this sample (peak RSS in MiB, zfs calls, …): each present and finite. */
  readonly values?: Readonly<Record<string, number>>;
}

export interface SideSummary {
  readonly n: number;
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly loadedRuns: number;
}

export interface SeriesResult {
  readonly scenario: string;
  /** One line: what was measured, at which settings, which verifications ran. */
  readonly description: string;
  readonly parameters: Readonly<Record<string, unknown>>;
  readonly environment: Environment;
  readonly samples: readonly Sample[];
  readonly summary: Readonly<Record<string, SideSummary>>;
  /** Ratios of medians, e.g. { "tool/seed": 0.97 }. */
  readonly ratios: Readonly<Record<string, number>>;
}

/** A measurement that must be there: a finite number, or an error naming what is missing. */
export function measured(value: number | undefined, what: string): number {
  if (value === undefined || !Number.isFinite(value)) throw new Error(`missing measurement: ${what}`);
  return value;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) throw new Error('missing measurement: a median of nothing');
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** The order of the sides in run `run`: rotated by one each run, so each side goes first as often. */
export function alternate<T>(sides: readonly T[], run: number): T[] {
  const k = run % sides.length;
  return [...sides.slice(k), ...sides.slice(0, k)];
}

/** Times `fn` (wall seconds), with the load average before and after. */
export async function sample(
  side: string,
  run: number,
  order: number,
  fn: () => Promise<Readonly<Record<string, number>> | void>,
): Promise<Sample> {
  const loadBefore = load();
  const started = process.hrtime.bigint();
  const values = await fn();
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const loadAfter = load();
  const cores = cpus().length;
  for (const [k, v] of Object.entries(values ?? {})) measured(v, `${side} run ${run + 1}: ${k}`);
  return {
    side,
    run,
    order,
    seconds: measured(seconds, `${side} run ${run + 1}: seconds`),
    loadBefore,
    loadAfter,
    loaded: loadBefore[0] > cores || loadAfter[0] > cores,
    ...(values ? { values } : {}),
  };
}

export function summarize(samples: readonly Sample[], side: string, pick: (s: Sample) => number = (s) => s.seconds): SideSummary {
  const mine = samples.filter((s) => s.side === side);
  const values = mine.map((s) => measured(pick(s), `${side}: a value`));
  return {
    n: values.length,
    median: median(values),
    min: Math.min(...values),
    max: Math.max(...values),
    loadedRuns: mine.filter((s) => s.loaded).length,
  };
}

/** Builds the result of a series: each side summarized, and the ratios of medians asked for ("a/b"). */
export function seriesResult(
  o: { scenario: string; description: string; parameters: Record<string, unknown>; environment: Environment; samples: readonly Sample[] },
  ratios: readonly (readonly [string, string])[] = [],
): SeriesResult {
  const sides = [...new Set(o.samples.map((s) => s.side))];
  const summary = Object.fromEntries(sides.map((side) => [side, summarize(o.samples, side)]));
  return {
    ...o,
    summary,
    ratios: Object.fromEntries(ratios.map(([a, b]) => [`${a}/${b}`, summary[a]!.median / summary[b]!.median])),
  };
}

/** Writes a result to bench/results/<scenario>-<commit>-<time>.json (or `dir`); returns the path. */
export function writeResult(result: SeriesResult, dir = RESULTS_DIR): string {
  mkdirSync(dir, { recursive: true });
  const stamp = result.environment.at.replace(/[:.]/g, '').slice(0, 17);
  const file = join(dir, `${result.scenario}-${result.environment.commit.slice(0, 10)}-${stamp}.json`);
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  return file;
}
