/**
 * A burst of directories (one small file each) with the shipped default settings (quietSeconds
 * 10, graceSeconds 30, concurrency 2), through `watch` and through `reconcile`: seconds from
 * the burst until every one is live at its path, and until every original is removed.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { CLI, benchPool, type Log } from './common.js';

export interface BurstResult {
  readonly via: 'watch' | 'reconcile';
  readonly directories: number;
  readonly liveSeconds: number;
  readonly doneSeconds: number;
}

/** Datasets live at their path: mounted, past the commit (swapped: in its grace period; or live). */
async function liveCount(pool: string): Promise<number> {
  const r = await execa('zfs', ['list', '-H', '-o', 'name,mounted,org.zfs-dynamic-creator:state', '-r', pool]);
  return r.stdout.split('\n').filter((l) => /\tyes\t(swapped|live)$/.test(l)).length;
}

/** Nothing of any job left: no helper entry in the holding directory, no journal record. */
async function allDone(mount: string, stateDir: string): Promise<boolean> {
  const helpers = await readdir(join(mount, '.zfs-dynamic-creator')).catch(() => [] as string[]);
  const journal = await readdir(join(stateDir, 'jobs')).catch(() => [] as string[]);
  return helpers.length === 0 && journal.length === 0;
}

export async function benchBurst(o: { via: 'watch' | 'reconcile'; directories: number; log: Log }): Promise<BurstResult> {
  const p = await benchPool('burst', 1024);
  try {
    const config = await p.config();
    const names = Array.from({ length: o.directories }, (_, i) => `project ${String(i).padStart(3, '0')}`);
    const burst = (): void => {
      for (const n of names) {
        mkdirSync(join(p.mount, n));
        writeFileSync(join(p.mount, n, 'sample.txt'), `${n}\n`);
      }
    };
    let daemon: ReturnType<typeof execa> | undefined;
    let started: number;
    let reconcileDone: Promise<unknown> | undefined;
    if (o.via === 'watch') {
      daemon = execa(process.execPath, [CLI, '--config', config, 'watch'], { reject: false, stdin: 'ignore' });
      let out = '';
      daemon.stderr!.on('data', (b: Buffer) => (out += b.toString()));
      while (!out.includes('NOTICE: watching ')) await new Promise((ok) => setTimeout(ok, 50));
      started = Date.now();
      burst();
    } else {
      burst();
      started = Date.now();
      reconcileDone = execa(process.execPath, [CLI, '--config', config, '-q', 'reconcile'], { reject: false, stdin: 'ignore' });
    }
    let liveSeconds = NaN;
    let doneSeconds = NaN;
    for (;;) {
      const elapsed = (Date.now() - started) / 1000;
      if (Number.isNaN(liveSeconds) && (await liveCount(p.pool)) === names.length) {
        liveSeconds = elapsed;
        o.log(`  ${o.via}: all ${names.length} live after ${elapsed.toFixed(1)} s`);
      }
      if (!Number.isNaN(liveSeconds) && (await allDone(p.mount, p.stateDir))) {
        doneSeconds = (Date.now() - started) / 1000;
        o.log(`  ${o.via}: all originals removed after ${doneSeconds.toFixed(1)} s`);
        break;
      }
      if (elapsed > 3600) throw new Error(`${o.via}: not done after an hour`);
      await new Promise((ok) => setTimeout(ok, 250));
    }
    daemon?.kill('SIGTERM');
    await daemon;
    await reconcileDone;
    return { via: o.via, directories: names.length, liveSeconds, doneSeconds };
  } finally {
    await p.destroy();
  }
}
