/**
 * Block cloning against the rsync path, both through the tool (`handle`, the shipped plugin list at its
 * defaults but quietSeconds 0 and graceSeconds 0): blockCloning auto against blockCloning off with
 * parallelCopy false (rsync alone) on the same pool, sides "auto" and "rsync", alternating runs, each side on a tree of its own
 * after a cold cache. Kernel OpenZFS only (zfs-fuse cannot share blocks): in the guest,
 *
 *   npm run build && mkdir -p bench/results
 *   scripts/openzfs-vm.sh -d 12 -t 10800 -w "$PWD/bench/results" -- node dist/bench/bench.js clone
 *
 * Rows: clone-1g (1 GiB in 4 files of 256 MiB), clone-20k (20,000 files of 0.5-16 KiB in 200
 * directories). The pool's bclonesaved and allocated growth at the seal (which shows the sharing)
 * needs a `zpool sync` inside the conversion, so it is read in one untimed conversion per side
 * after the series (a small plugin at the seal), never in a timed one.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, benchPool, destroyDataset, pairSeries, toolConfig, toolOverrides, toolSide, type BenchPool, type Log } from './common.js';
import { environment, measured, seriesResult, type SeriesResult } from './series.js';
import { VERIFICATIONS } from './convert.js';

interface Tree {
  readonly id: string;
  readonly label: string;
  make(dir: string): Promise<void>;
}

const bigTree: Tree = {
  id: 'clone-1g',
  label: '1 GiB in 4 files of 256 MiB',
  async make(dir) {
    await mkdir(dir, { recursive: true });
    const block = randomBytes(256 << 20);
    for (let i = 0; i < 4; i++) {
      // a different first word in every 128 KiB record: no two files alike
      for (let off = 0; off < block.length; off += 131_072) block.writeUInt32LE(i, off);
      await writeFile(join(dir, `run${i}.bam`), block);
    }
  },
};

const manySize = (i: number): number => 512 + ((i * 7919) % 16_384);

const manyTree: Tree = {
  id: 'clone-20k',
  label: '20,000 files of 0.5-16 KiB in 200 directories',
  async make(dir) {
    const pool = randomBytes(1 << 20);
    for (let d = 0; d < 200; d++) {
      const sub = join(dir, `lane${String(d).padStart(3, '0')}`);
      await mkdir(sub, { recursive: true });
      for (let f = 0; f < 100; f++) {
        const i = d * 100 + f;
        const start = (i * 37) % (pool.length - manySize(i));
        await writeFile(join(sub, `tile${String(f).padStart(3, '0')}.cbcl`), pool.subarray(start, start + manySize(i)));
      }
    }
  },
};

/** Records the pool's bclonesaved and allocated when the copy is sealed (after a zpool sync). */
const SEAL_REPORT = `import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const get = (pool, prop) => Number(execFileSync('zpool', ['get', '-Hp', '-o', 'value', prop, pool], { encoding: 'utf8' }).trim());
export default {
  name: 'bench-seal-report',
  options: { parse: (x) => x },
  apply(hooks, { options: o }) {
    hooks.step.tapPromise('bench-seal-report', async (job, step, when) => {
      if (step !== 'migrate/seal' || when !== 'before') return;
      execFileSync('zpool', ['sync', o.pool]);
      writeFileSync(o.report, JSON.stringify({ bclonesaved: get(o.pool, 'bclonesaved'), allocated: get(o.pool, 'allocated') }));
    });
  },
};
`;

async function poolNumber(pool: string, property: string): Promise<number> {
  const r = await execa('zpool', ['get', '-Hp', '-o', 'value', property, pool]);
  return measured(Number(r.stdout.trim()), `zpool ${property}`);
}

/** One untimed conversion with the seal report: the growth of bclonesaved and allocated at the seal, MiB. */
async function atSeal(
  p: BenchPool,
  tree: Tree,
  side: string,
  plugins: { name: string; options: unknown }[],
): Promise<Record<string, number>> {
  const dir = join(p.mount, `seal-${side}`);
  await tree.make(dir);
  const plugin = join(p.work, 'seal-report.mjs');
  const report = join(p.work, `seal-${side}.json`);
  await writeFile(plugin, SEAL_REPORT, { mode: 0o644 });
  const config = await p.config([...plugins.map((x) => [x.name, x.options]), [plugin, { pool: p.pool, report }]]);
  await execa('zpool', ['sync', p.pool]);
  const saved0 = await poolNumber(p.pool, 'bclonesaved');
  const alloc0 = await poolNumber(p.pool, 'allocated');
  const r = await execa(process.execPath, [CLI, '--config', config, 'handle', dir], { reject: false, stdin: 'ignore', cwd: '/' });
  if (r.exitCode !== 0) throw new Error(`${tree.id} ${side} (seal report): exit ${r.exitCode}: ${String(r.stderr).slice(-800)}`);
  const seal = JSON.parse(await readFile(report, 'utf8')) as { bclonesaved: number; allocated: number };
  await destroyDataset(`${p.pool}/seal-${side}`);
  return {
    bclonesavedMiB: measured(seal.bclonesaved - saved0, 'bclonesaved at the seal') / 2 ** 20,
    allocatedMiB: measured(seal.allocated - alloc0, 'allocated at the seal') / 2 ** 20,
  };
}

/** Whether the ZFS here is kernel OpenZFS (zfs-fuse has no kernel module and cannot clone). */
export const kernelZfs = (): boolean => existsSync('/sys/module/zfs');

async function cloneRow(p: BenchPool, tree: Tree, o: { runs: number; log: Log }): Promise<SeriesResult> {
  const env = environment();
  const auto = await toolConfig(p, toolOverrides('auto'));
  const off = await toolConfig(p, toolOverrides('off', { parallelCopy: false }));
  const samples = await pairSeries({
    p,
    runs: o.runs,
    sides: [toolSide('auto', p, auto.config), toolSide('rsync', p, off.config)],
    makeTree: (dir) => tree.make(dir),
    label: `${tree.id}: ${tree.label}`,
    log: o.log,
  });
  const seal = { auto: await atSeal(p, tree, 'auto', auto.plugins), rsync: await atSeal(p, tree, 'rsync', off.plugins) };
  o.log(`  at the seal (untimed): ${JSON.stringify(seal)}`);
  const description =
    `${tree.label} converted by \`handle\` with the shipped plugins (${auto.plugins.map((x) => x.name).join(', ')}) at their defaults ` +
    `but quietSeconds 0, graceSeconds 0: blockCloning auto against the rsync path (blockCloning off, parallelCopy false) on the same pool; verifications: ${VERIFICATIONS}; ` +
    'each side on a tree of its own after a cold cache (pool export/import, drop_caches); bclonesaved/allocated at the seal from one untimed run per side';
  const parameters = { tree: tree.label, runs: o.runs, plugins: { auto: auto.plugins, rsync: off.plugins }, atSeal: seal };
  return seriesResult({ scenario: tree.id, description, parameters, environment: env, samples }, [['auto', 'rsync']]);
}

/** `clone-1g` and `clone-20k` (or those of `only`), on kernel OpenZFS. */
export async function runClone(o: { runs: number; log: Log; only?: readonly string[] }): Promise<SeriesResult[]> {
  const unknown = (o.only ?? []).filter((id) => id !== bigTree.id && id !== manyTree.id);
  if (unknown.length > 0) throw new Error(`no clone row ${unknown.join(', ')} (clone-1g, clone-20k)`);
  if (!kernelZfs())
    throw new Error(
      'clone needs kernel OpenZFS (block cloning); this is zfs-fuse, which cannot share blocks: run it in the OpenZFS guest (see bench/clone.ts)',
    );
  const trees = [bigTree, manyTree].filter((t) => !o.only || o.only.includes(t.id));
  const p = await benchPool('clone', 6144);
  try {
    const results: SeriesResult[] = [];
    for (const tree of trees) results.push(await cloneRow(p, tree, o));
    return results;
  } finally {
    await p.destroy();
  }
}
