/**
 * Start-up of the incron path for a name the filter rejects: the seed's 4-argument form
 * (`<rootfs> <rootdir> .hidden IN_CREATE,IN_ISDIR`, the config naming only the root, so the
 * default plugin list) beside `node -e 0` and beside the seed's way (bench/seed-filter.py:
 * /usr/bin/python3 parsing the same arguments and matching the name with re.match). The three
 * rotate which goes first each run; every run must exit 0. The compile cache's state (the
 * program's own directory, src/util/compile-cache.ts) is recorded, after a warm-up that fills it
 * as a server's runs have. No target: the figures only.
 */
import { mkdirSync, readdirSync } from 'node:fs';
import nodeModule from 'node:module';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, benchPool, type Log } from './common.js';
import { PROJECT, alternate, environment, sample, seriesResult, type Sample, type SeriesResult } from './series.js';
import { COMPILE_CACHE_DIR, COMPILE_CACHE_ENV, type CompileCacheApi } from '../src/util/compile-cache.js';

const PYTHON = '/usr/bin/python3';
export const SEED_FILTER = join(PROJECT, 'bench', 'seed-filter.py');

/** Files Node keeps in `dir` for this Node version (a subdirectory per version), or undefined when there is none. */
function cachedFiles(dir: string): number | undefined {
  try {
    const mine = readdirSync(dir).filter((name) => name.startsWith(`${process.version}-`));
    if (mine.length === 0) return undefined;
    return mine.reduce((n, sub) => n + readdirSync(join(dir, sub), { withFileTypes: true }).filter((e) => e.isFile()).length, 0);
  } catch {
    return undefined;
  }
}

/** What the compile cache is for the tool's runs: whether Node has one, where it is, how full. */
export function compileCacheState(): Record<string, unknown> {
  const supported = typeof (nodeModule as unknown as CompileCacheApi).enableCompileCache === 'function';
  const setting = process.env[COMPILE_CACHE_ENV];
  const directory = setting === undefined || setting === '' ? COMPILE_CACHE_DIR : setting;
  const files = directory === 'off' ? undefined : cachedFiles(directory);
  return {
    nodeSupportsIt: supported,
    ...(process.env.NODE_COMPILE_CACHE !== undefined ? { NODE_COMPILE_CACHE: process.env.NODE_COMPILE_CACHE } : {}),
    directory,
    ...(setting !== undefined ? { [COMPILE_CACHE_ENV]: setting } : {}),
    filesForThisNode: files ?? 0,
    state: !supported || directory === 'off' ? 'off' : (files ?? 0) > 0 ? 'present and populated' : 'empty or missing',
  };
}

type Side = 'tool' | 'node' | 'python';

/** Runs one side once; its exit must be 0. */
async function once(command: Record<Side, readonly [string, readonly string[]]>, side: Side): Promise<void> {
  const [file, args] = command[side];
  const r = await execa(file, args, { reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) throw new Error(`startup: ${side} exited ${r.exitCode ?? r.signal}: ${r.stderr.slice(-300)}`);
}

/** Row `startup`: at least 21 runs of the three sides, rotating which goes first. */
export async function runStartup(o: { runs: number; log: Log }): Promise<SeriesResult[]> {
  const runs = Math.max(21, o.runs);
  const env = environment();
  const p = await benchPool('start', 256);
  try {
    const config = await p.config();
    mkdirSync(join(p.mount, '.hidden'));
    const incron = [p.pool, p.mount, '.hidden', 'IN_CREATE,IN_ISDIR'];
    const command: Record<Side, readonly [string, readonly string[]]> = {
      tool: [process.execPath, [CLI, '--config', config, ...incron]],
      node: [process.execPath, ['-e', '0']],
      python: [PYTHON, [SEED_FILTER, ...incron]],
    };
    const sides: Side[] = ['tool', 'node', 'python'];
    // A server's runs find the cache filled, and the files in the page cache.
    for (let i = 0; i < 3; i++) for (const side of sides) await once(command, side);
    const cacheBefore = compileCacheState();
    const samples: Sample[] = [];
    for (let run = 0; run < runs; run++) {
      for (const [i, side] of alternate(sides, run).entries()) samples.push(await sample(side, run, i, () => once(command, side)));
    }
    const result = seriesResult(
      {
        scenario: 'startup',
        description:
          `the incron path for a name the default name-filter rejects (${incron.slice(2).join(' ')}, default plugin list) ` +
          `against node -e 0 and the seed's way (${PYTHON} bench/seed-filter.py: argparse + re.match on the same arguments), ` +
          `${runs} runs rotating which goes first, wall seconds of each process; verified: every run exits 0`,
        parameters: {
          runs,
          arguments: incron.slice(2),
          plugins: 'default list (the config names only the root)',
          python: (await execa(PYTHON, ['--version'])).stdout.trim(),
          compileCache: { beforeSeries: cacheBefore, afterSeries: compileCacheState() },
          warmUp: '3 runs of each side before the series',
        },
        environment: env,
        samples,
      },
      [
        ['tool', 'node'],
        ['tool', 'python'],
      ],
    );
    const s = result.summary;
    o.log(
      `  start-up: tool ${(s.tool!.median * 1000).toFixed(0)} ms, node -e 0 ${(s.node!.median * 1000).toFixed(0)} ms, ` +
        `python3 ${(s.python!.median * 1000).toFixed(0)} ms (medians of ${runs}); compile cache ${String(cacheBefore.state)}`,
    );
    return [result];
  } finally {
    await p.destroy();
  }
}
