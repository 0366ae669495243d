/**
 * One directory converted, the tool (waits at their minimum, every verification on) against the
 * seed's raw command sequence on the same tree (zfs create at a staging mountpoint, rsync -aHAX,
 * mv aside, zfs inherit mountpoint, rm -rf), alternating, medians; the tool's peak RSS.
 */
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, benchPool, destroyDataset, makeTree, median, timedNode, type Log } from './common.js';

export interface ConvertResult {
  readonly files: number;
  readonly bigMiB: number;
  readonly tool: readonly number[];
  readonly seed: readonly number[];
  readonly toolMedian: number;
  readonly seedMedian: number;
  /** The median of each run's tool/seed ratio. */
  readonly ratio: number;
  readonly maxRssMiB: number;
}

export async function benchConvert(o: { files: number; bigMiB: number; runs: number; log: Log }): Promise<ConvertResult> {
  // Original and copy of each tree, with room to spare (4 KiB files take more than 4 KiB).
  const sizeMiB = Math.ceil(((o.files * 12) / 1024 + o.bigMiB) * 2.5) + 512;
  const p = await benchPool('conv', sizeMiB);
  const tool: number[] = [];
  const seed: number[] = [];
  let maxRssMiB = 0;
  try {
    const config = await p.config(['name-filter', ['quiet-wait', { quietSeconds: 0 }], 'zfs', ['rsync', { graceSeconds: 0 }]]);
    for (let run = 0; run < o.runs; run++) {
      const t = `tool${run}`;
      const s = `seed${run}`;
      o.log(`convert ${o.files} files + ${o.bigMiB} MiB: run ${run + 1}/${o.runs}, making the trees`);
      makeTree(join(p.mount, t), o.files, o.bigMiB);
      makeTree(join(p.mount, s), o.files, o.bigMiB);
      await execa('sync');
      // Alternating which goes first.
      const order = run % 2 === 0 ? ['tool', 'seed'] : ['seed', 'tool'];
      for (const which of order) {
        if (which === 'tool') {
          const r = await timedNode([CLI, '--config', config, '-q', 'handle', join(p.mount, t)]);
          if (r.exitCode !== 0) throw new Error(`the tool failed (${r.exitCode}): ${r.stderr.slice(-500)}`);
          tool.push(r.seconds);
          maxRssMiB = Math.max(maxRssMiB, r.maxRssMiB);
          o.log(`  tool ${r.seconds.toFixed(1)} s, ${r.maxRssMiB.toFixed(0)} MiB peak RSS`);
        } else {
          const started = process.hrtime.bigint();
          const staging = join(p.mount, `.${s}.staging`);
          await execa('zfs', ['create', '-o', `mountpoint=${staging}`, `${p.pool}/${s}`]);
          await execa('rsync', ['-aHAX', `${join(p.mount, s)}/`, `${staging}/`]);
          await execa('mv', [join(p.mount, s), join(p.mount, `.${s}.orig`)]);
          await execa('zfs', ['inherit', 'mountpoint', `${p.pool}/${s}`]);
          await execa('rm', ['-rf', join(p.mount, `.${s}.orig`)]);
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          await execa('rmdir', [staging]).catch(() => undefined);
          seed.push(seconds);
          o.log(`  seed ${seconds.toFixed(1)} s`);
        }
      }
      // Room for the next run.
      await destroyDataset(`${p.pool}/${t}`);
      await destroyDataset(`${p.pool}/${s}`);
    }
  } finally {
    await p.destroy();
  }
  const toolMedian = median(tool);
  const seedMedian = median(seed);
  // Each run's pair ran back to back on the same machine state: the ratio is the median of theirs.
  return {
    files: o.files,
    bigMiB: o.bigMiB,
    tool,
    seed,
    toolMedian,
    seedMedian,
    ratio: median(tool.map((t, i) => t / seed[i]!)),
    maxRssMiB,
  };
}
