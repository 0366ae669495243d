/**
 * The real incrond with the contrib/incron.d line (`reconcile --root <root>`: no name on the
 * shell line): it converts what it sees, a burst included, and a directory named with shell
 * syntax runs nothing.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, cli, createPool, datasetStates, fastPlugins, PROJECT, writeConfig, type TestPool } from '../helpers/zfs.js';
import { helperEntries } from '../helpers/state.js';
import { scaled } from '../helpers/time.js';

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
  if (line.includes('$')) throw new Error(`the contrib incron line passes something through the shell: ${line}`);
  const ours = line
    .replaceAll('/tank/runs', p.mount)
    .replace('/usr/bin/zfs-dynamic-creator', `${process.execPath} ${CLI} --config ${config}`);
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

const states = (): Promise<Map<string, string>> => datasetStates(p);

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
      const [summary] = (JSON.parse(r.stdout) as { roots: { counts: Record<string, number> }[] }).roots;
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

  it('a burst with names in shell syntax: nothing runs, those are left as they are, a normal one is converted', async () => {
    const tag = randomBytes(4).toString('hex');
    // A name cannot hold "/", and incron escapes spaces and backslashes in $#: the commands
    // make "/" with awk and separate words with ${IFS}. Through the old `handle $@/$#` line,
    // all three run as root (measured with the real incrond).
    const markers = [`/tmp/zdc-pwned-${tag}-1`, `/tmp/zdc-pwned-${tag}-2`, `/tmp/zdc-pwned-${tag}-3`];
    const slash = `$(awk\${IFS}'BEGIN{printf("%c",47)}')`;
    const at = (m: string): string => `touch\${IFS}${m.replaceAll('/', slash)}`;
    const hostile = [`x$(${at(markers[0]!)})`, `y\`${at(markers[1]!)}\``, `z;${at(markers[2]!)};`];
    const normal = `normal ${tag}`;
    for (const n of [...hostile, normal]) {
      await mkdir(join(p.mount, n));
      await writeFile(join(p.mount, n, 'data.txt'), `${n}\n`);
    }
    // Through incron alone: each event starts `reconcile --root`, and a sweep still running from
    // the burst before (or queued behind one) answers for it, so allow for a loaded machine.
    const deadline = Date.now() + scaled(120_000);
    while ((await states()).get(normal) !== 'live' && Date.now() < deadline) await sleep(250);
    expect((await states()).get(normal), 'converted through incron alone').toBe('live');
    expect(await readFile(join(p.mount, normal, 'data.txt'), 'utf8')).toBe(`${normal}\n`);
    // Let every command incron started finish.
    await sleep(3000);
    for (const m of markers) expect(existsSync(m), `${m}: a name was run by a shell`).toBe(false);
    const now = await states();
    for (const n of hostile) {
      expect(now.has(n), n).toBe(false);
      expect(await readFile(join(p.mount, n, 'data.txt'), 'utf8')).toBe(`${n}\n`);
    }
    // What a sweep says of them: one clear line each, the directory left as it is.
    type Summary = { rootdir: string; jobs: { name: string; outcome: string; message: string }[] };
    let summary: Summary | undefined;
    // (A sweep incron queued meanwhile answers for this one, with no jobs of its own: ask again.)
    for (let i = 0; i < 10 && !summary?.jobs.length; i++) {
      if (i > 0) await sleep(1000);
      const r = await cli(['--config', config, 'reconcile', '--root', p.mount, '--json'], { stateDir: p.stateDir });
      [summary] = (JSON.parse(r.stdout) as { roots: Summary[] }).roots;
    }
    expect(summary!.rootdir).toBe(p.mount);
    for (const n of hostile) {
      const job = summary!.jobs.find((j) => j.name === n);
      expect(job?.outcome, n).toBe('refused');
      expect(job?.message).toMatch(
        /cannot become a ZFS dataset: it holds "[$`;]", and a ZFS dataset name allows only letters, digits, space and - _ \. :; the zfs plugin's option mapNames: true would map it to a name ZFS allows; left as it is($|; tried again when the directory or the config changes)/,
      );
    }
    for (const m of markers) expect(existsSync(m)).toBe(false);
    for (const n of hostile) await rm(join(p.mount, n), { recursive: true });
  });

  it('reconcile --root refuses a directory that is not a configured root', async () => {
    const r = await cli(['--config', config, 'reconcile', '--root', '/tmp'], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toBe(`zfs-dynamic-creator: --root "/tmp" is not a configured root (${p.mount})`);
  });
});
