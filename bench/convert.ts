/**
 * One directory converted: the tool (`handle`) at its shipped plugin list and defaults but for
 * the waits (quietSeconds 0, graceSeconds 0) and blockCloning pinned off (the baseline copies),
 * against the seed's raw command sequence on a tree of its own (zfs create at a staging
 * mountpoint, rsync -aHAX, mv aside, zfs inherit mountpoint, rm -rf): alternating runs, cold
 * cache before each side, the tool's peak RSS in every sample.
 */
import { join } from 'node:path';
import { execa } from 'execa';
import {
  benchPool,
  checkConverted,
  destroyDataset,
  makeTree,
  pairSeries,
  toolConfig,
  toolOverrides,
  toolSide,
  type Log,
  type Side,
} from './common.js';
import { environment, seriesResult, type SeriesResult } from './series.js';

/** What the tool verifies at these settings (plugins/rsync: seal, passes; verifyContent off). */
export const VERIFICATIONS =
  'the seal (the copy checked entry by entry against the original: type, mode, owner, size, mtime; anything extra removed), ' +
  'the catch-up pass after the commit and the verifying pass before the original is removed (the same metadata; ' +
  'file contents not compared: verifyContent false)';

/** The seed's sequence: zfs create at a staging mountpoint, rsync -aHAX, mv aside, zfs inherit mountpoint, rm -rf. */
export function seedSide(pool: string, mount: string): Side {
  const names = (dir: string): { base: string; staging: string; aside: string } => {
    const base = dir.slice(mount.length + 1);
    return { base, staging: join(mount, `.${base}.staging`), aside: join(mount, `.${base}.orig`) };
  };
  return {
    name: 'seed',
    async convert(dir) {
      const { base, staging, aside } = names(dir);
      await execa('zfs', ['create', '-o', `mountpoint=${staging}`, `${pool}/${base}`]);
      await execa('rsync', ['-aHAX', `${dir}/`, `${staging}/`]);
      await execa('mv', [dir, aside]);
      await execa('zfs', ['inherit', 'mountpoint', `${pool}/${base}`]);
      await execa('rm', ['-rf', aside]);
    },
    async cleanup(dir) {
      const { base, staging } = names(dir);
      await checkConverted(`${pool}/${base}`, dir);
      await execa('rmdir', [staging], { reject: false });
      await destroyDataset(`${pool}/${base}`);
    },
  };
}

/** `convert-<N>k`: N files of 4 KiB + `bigMiB` MiB, `runs` alternating runs. */
export async function runConvert(o: { runs: number; files: number; bigMiB: number; log: Log }): Promise<SeriesResult[]> {
  const env = environment();
  // Two trees and one copy at a time, with room to spare (a 4 KiB file takes more than 4 KiB).
  const p = await benchPool('conv', Math.ceil(((o.files * 12) / 1024 + o.bigMiB) * 3.5) + 512);
  try {
    const { config, plugins } = await toolConfig(p, toolOverrides('off'));
    const label = `convert ${o.files} files + ${o.bigMiB} MiB`;
    const samples = await pairSeries({
      p,
      runs: o.runs,
      sides: [toolSide('tool', p, config), seedSide(p.pool, p.mount)],
      makeTree: (dir) => makeTree(dir, o.files, o.bigMiB),
      label,
      log: o.log,
    });
    // Another size of big file is another row (checking runs), never a target's.
    const size = o.files % 1000 === 0 ? `${o.files / 1000}k` : String(o.files);
    const scenario = `convert-${size}${o.bigMiB === 256 ? '' : `-${o.bigMiB}m`}`;
    const description =
      `one directory of ${o.files} files of 4 KiB + ${o.bigMiB} MiB converted by \`handle\` with the shipped plugins ` +
      `(${plugins.map((x) => x.name).join(', ')}) at their defaults but quietSeconds 0, graceSeconds 0, blockCloning off; ` +
      `verifications: ${VERIFICATIONS}; against the seed's raw sequence (zfs create, rsync -aHAX, mv, zfs inherit mountpoint, rm -rf); ` +
      'each side on a tree of its own after a cold cache (pool export/import, drop_caches)';
    const parameters = { files: o.files, fileKiB: 4, bigMiB: o.bigMiB, runs: o.runs, plugins };
    return [seriesResult({ scenario, description, parameters, environment: env, samples }, [['tool', 'seed']])];
  } finally {
    await p.destroy();
  }
}
