/**
 * npm run bench:table: the README's table of figures, made from the raw results in bench/results/
 * (the newest result of each row's id), written between the `<!-- bench:table -->` markers.
 * `--check` changes nothing and exits 1 when the README's table is not what the results give, so a
 * figure and its source cannot drift. Every verdict is computed from the figures (issue 22's targets).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PROJECT, RESULTS_DIR, type SeriesResult, type Sample } from './series.js';

export const BEGIN = '<!-- bench:table -->';
export const END = '<!-- /bench:table -->';

/** A target: its text, and whether a result meets it (from its figures only). */
interface Target {
  readonly text: string;
  met(r: SeriesResult): boolean;
}

const ratio = (r: SeriesResult, key: string): number => {
  const v = r.ratios[key];
  if (v === undefined || !Number.isFinite(v)) throw new Error(`${r.scenario}: no ratio ${key}`);
  return v;
};

const param = (r: SeriesResult, key: string): number => {
  const v = r.parameters[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${r.scenario}: no parameter ${key}`);
  return v;
};

const bySide = (r: SeriesResult, side: string): readonly Sample[] => {
  const mine = r.samples.filter((s) => s.side === side);
  if (mine.length === 0) throw new Error(`${r.scenario}: no sample of ${side}`);
  return mine;
};

const value = (s: Sample, key: string, scenario: string): number => {
  const v = s.values?.[key];
  if (v === undefined || !Number.isFinite(v)) throw new Error(`${scenario}: a ${s.side} sample of run ${s.run + 1} has no ${key}`);
  return v;
};

const BURST: Target = {
  text: 'live ≤ quietSeconds + 30 s and done ≤ quietSeconds + graceSeconds + 60 s, every run',
  met: (r) => {
    const q = param(r, 'quietSeconds');
    const g = param(r, 'graceSeconds');
    return bySide(r, 'live').every((s) => s.seconds <= q + 30) && bySide(r, 'done').every((s) => s.seconds <= q + g + 60);
  },
};

const SWEEP: Target = {
  text: 'whole process ≤ 2 s (median); zfs calls O(1)',
  met: (r) => Object.values(r.summary).every((s) => s.median <= 2),
};

const sweepDatasets = (id: string): number => Number(/^sweep-(\d+)-/.exec(id)?.[1] ?? 0);

/** Issue 22's targets by row id. */
export function targetOf(id: string): Target | undefined {
  if (id === 'convert-20k') return { text: 'tool/seed ≤ 1.0×', met: (r) => ratio(r, 'tool/seed') <= 1.0 };
  if (id === 'convert-200k')
    return {
      text: 'tool/seed ≤ 1.1×; peak RSS < 200 MiB, every run',
      met: (r) => ratio(r, 'tool/seed') <= 1.1 && bySide(r, 'tool').every((s) => value(s, 'maxRssMiB', r.scenario) < 200),
    };
  // The tool with block cloning (auto) against its rsync path (blockCloning off, parallelCopy false), in the same guest
  if (id === 'clone-1g') return { text: 'auto/rsync ≤ 0.3×', met: (r) => ratio(r, 'auto/rsync') <= 0.3 };
  if (id === 'clone-20k') return { text: 'auto/rsync ≤ 1.0×', met: (r) => ratio(r, 'auto/rsync') <= 1.0 };
  if (id.startsWith('burst-')) return BURST;
  // The target is for 10,000 datasets; a smaller sweep (900 mounted: what zfs-fuse can mount) is a figure only.
  if (id.startsWith('sweep-')) return sweepDatasets(id) >= 10_000 ? SWEEP : undefined;
  return undefined;
}

/** A row with no target: what it is for instead. */
const untargeted = (id: string): string =>
  id === 'startup' ? "none (beside the seed's way)" : id.startsWith('sweep-') ? 'none (the target is for 10,000)' : '(none)';

/** The rows the README always shows, measured or not, in this order; any other id follows. */
export const ROWS = [
  'convert-20k',
  'convert-200k',
  'clone-1g',
  'clone-20k',
  'burst-watch',
  'burst-reconcile',
  'sweep-10000-mounted',
  'startup',
];

/** The newest result (by environment.at) of each scenario id. */
export function newestPerScenario(results: readonly SeriesResult[]): Map<string, SeriesResult> {
  const newest = new Map<string, SeriesResult>();
  for (const r of results) {
    const had = newest.get(r.scenario);
    if (!had || had.environment.at < r.environment.at) newest.set(r.scenario, r);
  }
  return newest;
}

const s1 = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(1));

/** The figure of a result: each side's median (min–max) in seconds, the ratios of medians, each further value's range. */
export function figure(r: SeriesResult): string {
  const sides = Object.entries(r.summary).map(([side, s]) => `${side} ${s1(s.median)} s (${s1(s.min)}–${s1(s.max)})`);
  const ratios = Object.entries(r.ratios).map(([k, v]) => `**${k} ${v.toFixed(2)}×**`);
  const keys = [...new Set(r.samples.flatMap((s) => Object.keys(s.values ?? {})))].sort();
  const values = keys.map((k) => {
    const vs = r.samples.flatMap((s) => (s.values?.[k] === undefined ? [] : [s.values[k]]));
    return `${k} ${s1(Math.min(...vs))}–${s1(Math.max(...vs))}`;
  });
  return [sides.join(', '), ...ratios, ...values].join('; ');
}

const loadRange = (loads: readonly number[]): string => `${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`;

/** Where and when: the commit, the machine, Node, ZFS, the number of runs, loaded samples, the 1-minute load before and after. */
export function provenance(r: SeriesResult): string {
  const e = r.environment;
  const runs = new Set(r.samples.map((s) => s.run)).size;
  const loaded = r.samples.filter((s) => s.loaded).length;
  return [
    `\`${e.commit.slice(0, 10)}\`${e.dirty ? ' (uncommitted changes)' : ''}, ${e.at.slice(0, 10)}`,
    `${e.machine.cpus} × ${e.machine.model}, ${e.machine.memoryGiB} GiB`,
    `Node ${e.node}, ${e.zfs}`,
    `${runs} run${runs === 1 ? '' : 's'}`,
    ...(loaded > 0 ? [`**loaded** (${loaded} of ${r.samples.length} samples)`] : []),
    `load before ${loadRange(r.samples.map((s) => s.loadBefore[0]))}, after ${loadRange(r.samples.map((s) => s.loadAfter[0]))}`,
  ].join('; ');
}

export function verdict(r: SeriesResult | undefined, t: Target | undefined): string {
  if (!t) return '';
  if (!r) return '';
  return t.met(r) ? 'met' : '**not met**';
}

const cell = (text: string): string => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/**
 * The Markdown table of the newest result of each row (ROWS first; "not measured yet" for a missing
 * one), then what each measured row is (its description).
 */
export function table(results: readonly SeriesResult[]): string {
  const newest = newestPerScenario(results);
  const ids = [...ROWS, ...[...newest.keys()].filter((id) => !ROWS.includes(id)).sort()];
  const lines = ['| row | figure (medians, min–max; ratio of medians) | target | verdict | measured |', '|---|---|---|---|---|'];
  const described: string[] = [];
  for (const id of ids) {
    const r = newest.get(id);
    const t = targetOf(id);
    const row = r
      ? [`\`${id}\``, figure(r), t?.text ?? untargeted(id), verdict(r, t), provenance(r)]
      : [`\`${id}\``, 'not measured yet', t?.text ?? untargeted(id), '', ''];
    lines.push(`| ${row.map(cell).join(' | ')} |`);
    if (r) described.push(`- \`${id}\`: ${r.description}`);
  }
  return `${[...lines, ...(described.length > 0 ? ['', ...described] : [])].join('\n')}\n`;
}

/** `text` with what stands between the markers replaced by `content`. */
export function replaceBetween(text: string, content: string): string {
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) throw new Error(`no ${BEGIN} … ${END} markers`);
  return `${text.slice(0, a + BEGIN.length)}\n${content}${text.slice(b)}`;
}

/** The raw results in `dir` (bench/results/*.json). */
export function readResults(dir = RESULTS_DIR): SeriesResult[] {
  const files = (() => {
    try {
      return readdirSync(dir).filter((f) => f.endsWith('.json'));
    } catch {
      return [];
    }
  })();
  return files.sort().map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as SeriesResult);
}

export const README = join(PROJECT, 'README.md');

/** Writes the README's table, or with `check` says whether it is current (exit code 0) or not (1). */
export function main(argv: readonly string[]): number {
  const check = argv.includes('--check');
  const before = readFileSync(README, 'utf8');
  const after = replaceBetween(before, table(readResults()));
  if (check) {
    if (after === before) return 0;
    process.stderr.write("bench:table: README.md's table is not what bench/results/ gives: run `npm run build && npm run bench:table`\n");
    return 1;
  }
  if (after !== before) writeFileSync(README, after);
  process.stdout.write(`README.md: table of ${newestPerScenario(readResults()).size} measured rows\n`);
  return 0;
}

if (process.argv[1] && import.meta.filename === process.argv[1]) process.exitCode = main(process.argv.slice(2));
