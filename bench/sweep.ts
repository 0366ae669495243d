/**
 * A sweep with nothing to do, on a root with 1,000 datasets: how long `reconcile` takes
 * and how many times it runs zfs. Makes its own throwaway pool (a file under /var/tmp),
 * and destroys it afterwards.
 */
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, benchPool, median } from './common.js';

export interface SweepResult {
  readonly datasets: number;
  readonly plainSkipped: number;
  readonly createSeconds: number;
  readonly runs: readonly number[];
  readonly medianSeconds: number;
  readonly zfsCalls: number;
  readonly mounted: boolean;
}

export interface SweepOptions {
  readonly datasets?: number;
  /** Directories the name filter leaves alone: looked at every sweep, never converted. */
  readonly skipped?: number;
  readonly runs?: number;
  /**
   * Mount every dataset (FUSE mounts with zfs-fuse). Off by default: zfs-fuse failed to mount
   * the ~800th dataset here ("Input/output error") with other pools mounted, and the pool then
   * could not be destroyed. Unmounted datasets (canmount=noauto) with a directory of the same
   * name give the sweep the same listing to read.
   */
  readonly mounted?: boolean;
  readonly log?: (line: string) => void;
}

export async function benchSweep(options: SweepOptions = {}): Promise<SweepResult> {
  const count = options.datasets ?? 1000;
  const skipped = options.skipped ?? 100;
  const runs = options.runs ?? 5;
  const log = options.log ?? (() => undefined);
  const p = await benchPool('sweep', 1024);
  const { pool, mount, work } = p;
  const real = (await execa('sh', ['-c', 'command -v zfs'])).stdout.trim();
  try {
    log(`pool ${pool} at ${mount}; creating ${count} datasets`);
    const started = Date.now();
    const names = Array.from({ length: count }, (_, i) => `${pool}/run${String(i).padStart(4, '0')}`);
    const mounted = options.mounted ?? process.env.BENCH_MOUNTED === '1';
    const createArgs = mounted ? ['create'] : ['create', '-o', 'canmount=noauto'];
    for (let i = 0; i < names.length; i += 32) {
      await Promise.all(
        names.slice(i, i + 32).map(async (n) => {
          await execa(real, [...createArgs, n]);
          if (!mounted) await mkdir(join(mount, n.slice(pool.length + 1)), { recursive: true });
        }),
      );
      if ((i / 32) % 8 === 7) log(`  ${Math.min(i + 32, count)} datasets`);
    }
    for (let i = 0; i < skipped; i++) await mkdir(join(mount, `scratch-${i}`));
    const createSeconds = (Date.now() - started) / 1000;

    const bin = join(work, 'bin');
    const calls = join(work, 'zfs-calls.log');
    await mkdir(bin);
    await writeFile(join(bin, 'zfs'), `#!/bin/sh\nprintf '%s\\n' "$*" >> '${calls}'\nexec '${real}' "$@"\n`);
    await chmod(join(bin, 'zfs'), 0o755);
    const config = join(work, 'config.json');
    await writeFile(
      config,
      JSON.stringify({
        stateDir: join(work, 'state'),
        roots: [{ rootfs: pool, rootdir: mount, plugins: [['name-filter', { exclude: '^scratch-' }], 'quiet-wait', 'zfs', 'rsync'] }],
      }),
    );
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` };
    const times: number[] = [];
    let zfsCalls = 0;
    for (let i = 0; i < runs; i++) {
      await writeFile(calls, '');
      const t0 = process.hrtime.bigint();
      const r = await execa(process.execPath, [CLI, '--config', config, '-q', 'reconcile', '--json'], {
        env,
        reject: false,
        stdin: 'ignore',
      });
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      if (r.exitCode !== 0) throw new Error(`reconcile failed (${r.exitCode}): ${r.stderr}`);
      const summary = (JSON.parse(r.stdout) as { roots: { counts: Record<string, number> }[] }).roots;
      if (summary[0]?.counts.converted) throw new Error('the sweep converted something; it should have had nothing to do');
      times.push(seconds);
      zfsCalls = (await readFile(calls, 'utf8')).split('\n').filter(Boolean).length;
      log(`  reconcile run ${i + 1}: ${seconds.toFixed(2)} s, ${zfsCalls} zfs calls`);
    }
    return { datasets: count, plainSkipped: skipped, createSeconds, runs: times, medianSeconds: median(times), zfsCalls, mounted };
  } finally {
    await p.destroy();
  }
}
