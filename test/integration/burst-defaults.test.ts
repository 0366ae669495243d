/**
 * A burst of directories with the shipped default settings (no watch section, the default
 * plugin list: quietSeconds 10, graceSeconds 30, concurrency 2), through the daemon and through
 * reconcile. Waiting is not work: the jobs wait out their quiet and grace periods together, and
 * only the copies take turns. Every directory ends converted and no helper is left. No timing
 * is asserted here (figures are the benchmark's business: npm run bench), only completion
 * within a generous bound.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasets, type TestPool } from '../helpers/zfs.js';
import { startDaemon } from '../helpers/daemon.js';
import { leftovers } from '../helpers/state.js';

let p: TestPool;
let config: string;

beforeAll(async () => {
  p = await createPool('burst', 512);
  // The shipped defaults: only what must be said (where the state is, which root).
  config = join(p.work, 'defaults.json');
  await writeFile(config, JSON.stringify({ stateDir: p.stateDir, roots: [{ rootfs: p.pool, rootdir: p.mount }] }));
});
afterAll(async () => {
  await p?.destroy();
});

async function makeBurst(prefix: string, count: number): Promise<string[]> {
  const names = Array.from({ length: count }, (_, i) => `${prefix} ${String(i).padStart(2, '0')}`);
  for (const n of names) {
    await mkdir(join(p.mount, n));
    await writeFile(join(p.mount, n, 'sample.txt'), `${n}\n`);
  }
  return names;
}

/** Mounted at their path past the commit: in their grace period (swapped) or finished (live). */
async function live(): Promise<Set<string>> {
  return new Set(
    (await datasets(p.pool))
      .filter(
        (d) =>
          (d.state === 'live' || d.state === 'swapped') &&
          d.mounted === 'yes' &&
          d.mountpoint === join(p.mount, d.name.slice(p.pool.length + 1)),
      )
      .map((d) => d.name.slice(p.pool.length + 1)),
  );
}

describe('a burst of 40 directories with the default settings', () => {
  it('watch: all converted, published while their grace periods run together; status shows the queue; nothing left', async () => {
    const daemon = await startDaemon(p, config);
    const out = daemon.output;
    expect(out()).toContain('concurrency 2, up to 64 jobs waiting or working');
    const names = await makeBurst('lab', 40);

    // While they wait for quiet, status sees every one of them, none holding a work slot.
    let seen: { active: { name: string; working: boolean; waiting?: string }[] } | undefined;
    for (let i = 0; i < 100; i++) {
      const s = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir })).stdout) as {
        daemon: typeof seen | null;
      };
      if (s.daemon && s.daemon.active.length === names.length) {
        seen = s.daemon;
        break;
      }
      await sleep(200);
    }
    expect(seen?.active.filter((a) => a.working)).toEqual([]);

    // All live (and exported) before any grace period has ended: the grace periods overlap.
    const deadline = Date.now() + 300_000;
    while ((await live()).size < names.length && Date.now() < deadline) await sleep(500);
    expect([...(await live())].sort()).toEqual(names);
    for (const n of names) expect(await readFile(join(p.mount, n, 'sample.txt'), 'utf8')).toBe(`${n}\n`);
    while (!names.every((n) => out().includes(`[${n}] converted into`)) && Date.now() < deadline) await sleep(500);
    for (const n of names) expect(out()).toContain(`[${n}] converted into`);
    expect((await datasets(p.pool)).filter((d) => d.name !== p.pool && d.state !== 'live')).toEqual([]);
    expect(
      out()
        .split('\n')
        .filter((l) => /ERROR|WARN|Warning/.test(l)),
    ).toEqual([]);
    expect(await leftovers(p)).toEqual([]);
    expect(await daemon.stop()).toBe(0);
    // The daemon's status file goes with it.
    const after = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir })).stdout) as { daemon: unknown };
    expect(after.daemon).toBeNull();
  });

  it('reconcile: all converted in one sweep, nothing left', async () => {
    const names = await makeBurst('sweep', 40);
    const r = await cli(['--config', config, 'reconcile', '--json'], { stateDir: p.stateDir, timeoutMs: 600_000 });
    expect({ exitCode: r.exitCode, stderr: r.stderr.slice(-2000) }).toMatchObject({ exitCode: 0 });
    expect(r.stderr.split('\n').filter((l) => /ERROR|WARN|Warning/.test(l))).toEqual([]);
    const [summary] = (JSON.parse(r.stdout) as { roots: { counts: Record<string, number> }[] }).roots;
    expect(summary!.counts).toEqual({ converted: names.length });
    const now = await live();
    for (const n of names) expect(now.has(n)).toBe(true);
    expect(await leftovers(p)).toEqual([]);
  });
});
