/**
 * The real incrond with the contrib/incron.d line: it converts what it sees, drops events in a
 * burst, and `reconcile` converts the rest.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, PROJECT, cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { helperEntries } from '../helpers/state.js';

let p: TestPool;
let config: string;
const table = `/etc/incron.d/zdc-test-${randomBytes(4).toString('hex')}`;
let incrond: ResultPromise | undefined;

/** Whether an incrond (not a zombie) runs already. */
async function incrondRunning(): Promise<boolean> {
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      if (/^\d+ \(incrond\) [^Z]/.test(stat)) return true;
    } catch {
      // gone
    }
  }
  return false;
}

beforeAll(async () => {
  p = await createPool('incron', 512);
  config = await writeConfig(p, fastPlugins(), { watch: { concurrency: 3, sweepIntervalSeconds: 300 } });
  // The contrib example, with the test's root and the built CLI in place of the installed one.
  const example = await readFile(join(PROJECT, 'contrib', 'incron.d', 'zfs-dynamic-creator'), 'utf8');
  const line = example.split('\n').find((l) => l.startsWith('/'));
  if (!line) throw new Error('contrib/incron.d/zfs-dynamic-creator has no table line');
  const ours = line.replace(/^\/tank\/runs /, `${p.mount} `).replace('/usr/bin/zfs-dynamic-creator', `${process.execPath} ${CLI} --config ${config}`);
  await writeFile(table, `${ours}\n`);
  if (!(await incrondRunning())) {
    incrond = execa('incrond', ['-n'], { reject: false, stdin: 'ignore', env: { ...process.env } });
  }
  await sleep(1500);
});
afterAll(async () => {
  await rm(table, { force: true });
  if (incrond) {
    incrond.kill('SIGTERM');
    await incrond;
  }
  // Handlers incron started may still be finishing.
  await sleep(1000);
  await p?.destroy();
});

async function states(): Promise<Map<string, string>> {
  const rows = await datasets(p.pool);
  return new Map(rows.filter((r) => r.name !== p.pool).map((r) => [r.name.slice(p.pool.length + 1), r.state]));
}

describe('incron with the contrib/incron.d line', () => {
  it('converts a directory with a space in its name, through incron alone', async () => {
    await mkdir(join(p.mount, 'first run'));
    await writeFile(join(p.mount, 'first run', 'f'), 'first\n');
    for (let i = 0; i < 120 && (await states()).get('first run') !== 'live'; i++) await sleep(250);
    expect((await states()).get('first run')).toBe('live');
    expect(await readFile(join(p.mount, 'first run', 'f'), 'utf8')).toBe('first\n');
  });

  it('a burst of 50: incron converts some, reconcile the rest; all 50 end as datasets with their files', async () => {
    const names = Array.from({ length: 50 }, (_, i) => `burst ${String(i).padStart(2, '0')}`);
    for (const n of names) {
      await mkdir(join(p.mount, n));
      await writeFile(join(p.mount, n, 'a.txt'), `${n} a\n`);
      await writeFile(join(p.mount, n, 'b.txt'), `${n} b\n`);
    }
    await sleep(3000);
    const byIncron = [...(await states()).entries()].filter(([n, s]) => n.startsWith('burst') && s === 'live').length;
    // reconcile leaves what incron's handlers hold ('busy') to them; run again until nothing is busy.
    const outcomes: Record<string, number> = {};
    for (let round = 0; round < 5; round++) {
      const r = await cli(['--config', config, 'reconcile', '--json'], { stateDir: p.stateDir });
      expect(r.exitCode, r.stderr).toBe(0);
      const [summary] = JSON.parse(r.stdout) as { counts: Record<string, number> }[];
      for (const [k, v] of Object.entries(summary!.counts)) outcomes[k] = (outcomes[k] ?? 0) + v;
      if (!summary!.counts.busy) break;
      await sleep(2000);
    }
    const now = await states();
    for (const n of names) {
      expect(now.get(n), n).toBe('live');
      expect(await readFile(join(p.mount, n, 'a.txt'), 'utf8')).toBe(`${n} a\n`);
      expect(await readFile(join(p.mount, n, 'b.txt'), 'utf8')).toBe(`${n} b\n`);
    }
    expect(await helperEntries(p.mount)).toEqual([]);
    console.log(`incron burst of 50: ${byIncron} live after 3 s (incron alone), reconcile: ${JSON.stringify(outcomes)}`);
  });
});
