/**
 * Issue 19, roots: a root that is gone never stops the others (item 12), and two instances with
 * different stateDirs never share a root.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setTimeout as sleep } from 'node:timers/promises';
import { cli, createPool, datasetStates, fastPlugins, waitLive, type TestPool } from '../helpers/zfs.js';
import { startDaemon } from '../helpers/daemon.js';
import { scaled } from '../helpers/time.js';
import { makeTree } from '../helpers/tree.js';

const root = (p: TestPool, plugins: unknown[]): Record<string, unknown> => ({ rootfs: p.pool, rootdir: p.mount, plugins });

async function writeJson(file: string, value: unknown): Promise<string> {
  await writeFile(file, JSON.stringify(value, null, 1));
  return file;
}

describe('a root that is gone (item 12)', () => {
  let gone: TestPool;
  let other: TestPool;
  let state: string;
  let both: string;
  let onlyOther: string;
  let record: { file: string; text: string };

  beforeAll(async () => {
    gone = await createPool('rgone');
    other = await createPool('rother');
    state = join(await mkdtemp(join(tmpdir(), 'zdc-roots-')), 'state');
    // One job of each root killed past its commit, its original kept for the cleanup.
    const kill = ['fault-injection', { killAt: 'cleanup/remove-original', when: 'before' }];
    both = await writeJson(join(other.work, 'both.json'), {
      stateDir: state,
      roots: [root(gone, fastPlugins({ more: [kill] })), root(other, fastPlugins({ more: [kill] }))],
    });
    onlyOther = await writeJson(join(other.work, 'other.json'), { stateDir: state, roots: [root(other, fastPlugins())] });
    for (const p of [gone, other]) {
      await makeTree(join(p.mount, 'job'), 6, 7);
      const r = await cli(['--config', both, 'handle', join(p.mount, 'job')], { stateDir: state });
      expect(r.exitCode, r.stderr).not.toBe(0);
    }
    const files = (await readdir(join(state, 'jobs'))).filter((n) => n.endsWith('.json'));
    expect(files).toHaveLength(2);
    for (const name of files) {
      const text = await readFile(join(state, 'jobs', name), 'utf8');
      if ((JSON.parse(text) as { rootdir: string }).rootdir === gone.mount) record = { file: join(state, 'jobs', name), text };
    }
    expect(record).toBeDefined();
    // Its pool destroyed (and its mountpoint with it).
    await gone.destroy();
  });
  afterAll(async () => {
    await other?.destroy();
    await gone?.destroy();
    if (state) await rm(join(state, '..'), { recursive: true, force: true });
  });

  it('recover for the other root finishes its job, names the gone root in one line, fails once, then exits 0 every time; the gone job waits untouched', async () => {
    const first = await cli(['--config', onlyOther, 'recover'], { stateDir: state });
    expect(first.stdout).toContain(`recovered   ${JSON.stringify(`${other.mount}/job`)}`);
    expect(first.stdout + first.stderr).not.toMatch(/ENOENT|no such file/);
    const line = `root ${JSON.stringify(gone.mount)} is gone (${JSON.stringify(gone.mount)} does not exist); its 1 interrupted job(s) wait in the journal, untouched, until it is back`;
    expect(first.stdout).toContain(`gone        ${line}`);
    // Told once: the first run to meet it fails (a timer shows it), the next ones do not.
    expect(first.exitCode, first.stderr).toBe(1);
    expect((await datasetStates(other)).get('job')).toBe('live');
    for (let i = 0; i < 2; i++) {
      const again = await cli(['--config', onlyOther, 'recover'], { stateDir: state });
      expect(again.exitCode, again.stderr).toBe(0);
      expect(again.stdout.trim()).toBe(`gone        ${line} (import or mount it, then run 'zfs-dynamic-creator recover')`);
    }
    // With the root still configured: the same, and the sweep of the other root goes on.
    const configured = await cli(['--config', both, 'recover'], { stateDir: state });
    expect(configured.exitCode, configured.stderr).toBe(0);
    expect(configured.stdout).toContain(`gone        ${line}`);
    const sweep = await cli(['--config', both, 'reconcile'], { stateDir: state });
    expect(sweep.exitCode, sweep.stdout + sweep.stderr).toBe(0);
    expect(sweep.stdout).toContain(line);
    expect(sweep.stdout).toContain(`${other.mount} (${other.pool}): nothing to do`);
    expect(await readFile(record.file, 'utf8')).toBe(record.text);
  });

  it('status and doctor name the gone root in one line', async () => {
    await cli(['--config', onlyOther, 'recover'], { stateDir: state });
    for (const config of [onlyOther, both]) {
      const status = await cli(['--config', config, 'status'], { stateDir: state });
      expect(status.exitCode, status.stderr).toBe(0);
      const lines = status.stdout.split('\n').filter((l) => l.includes(gone.mount));
      expect(lines, status.stdout).toHaveLength(1);
      expect(lines[0]).toMatch(
        new RegExp(`^root "${gone.mount}" is gone \\(.*\\); its 1 interrupted job\\(s\\) wait in the journal, untouched, until it is back`),
      );
      const doctor = await cli(['--config', config, 'doctor'], { stateDir: state });
      const gones = doctor.stdout.split('\n').filter((l) => l.includes('root gone'));
      expect(gones, doctor.stdout).toHaveLength(1);
      expect(gones[0]).toContain(`root "${gone.mount}" is gone`);
    }
    expect(await readFile(record.file, 'utf8')).toBe(record.text);
  });

  it('the daemon says so once and goes on with the other root', async () => {
    const config = await writeJson(join(other.work, 'daemon.json'), {
      stateDir: state,
      watch: { sweepIntervalSeconds: 1 },
      roots: [root(gone, fastPlugins()), root(other, fastPlugins())],
    });
    const daemon = await startDaemon({ stateDir: state }, config);
    await makeTree(join(other.mount, 'new'), 3, 9);
    await waitLive(other, ['new'], scaled(60_000));
    await daemon.waitFor(`root ${JSON.stringify(gone.mount)} is gone`);
    // A few sweeps later (one a second), still said once.
    await sleep(scaled(3000));
    expect(
      daemon
        .output()
        .split('\n')
        .filter((l) => l.includes(`root ${JSON.stringify(gone.mount)} is gone`)),
    ).toHaveLength(1);
    expect(daemon.output()).not.toMatch(/ENOENT|sweep failed/);
    expect(await daemon.stop()).toBe(0);
    expect(await readFile(record.file, 'utf8')).toBe(record.text);
  });

  it('a bare mountpoint left by an exported pool: nothing is made in it, the job still waits', async () => {
    await mkdir(gone.mount, { recursive: true });
    try {
      const r = await cli(['--config', onlyOther, 'recover'], { stateDir: state });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toContain(`root ${JSON.stringify(gone.mount)} is gone (ZFS filesystem ${gone.pool} does not exist)`);
      expect(await readdir(gone.mount)).toEqual([]);
      expect(await readFile(record.file, 'utf8')).toBe(record.text);
    } finally {
      await rm(gone.mount, { recursive: true, force: true });
    }
  });
});

describe('two instances with different stateDirs on one root', () => {
  let p: TestPool;
  let first: string;
  let second: string;
  let otherState: string;

  beforeAll(async () => {
    p = await createPool('rtwo');
    otherState = join(p.work, 'other-state');
    first = await writeJson(join(p.work, 'first.json'), { stateDir: p.stateDir, roots: [root(p, fastPlugins())] });
    second = await writeJson(join(p.work, 'second.json'), { stateDir: otherState, roots: [root(p, fastPlugins())] });
  });
  afterAll(async () => {
    await p?.destroy();
  });

  it('the second is refused with one line naming both stateDirs and how to resolve; an administrator who moved the stateDir removes the record', async () => {
    await makeTree(join(p.mount, 'a'), 3, 1);
    const a = await cli(['--config', first, 'handle', join(p.mount, 'a')], { stateDir: p.stateDir });
    expect(a.exitCode, a.stderr).toBe(0);
    await makeTree(join(p.mount, 'b'), 3, 2);
    const owner = join(p.mount, '.zfs-dynamic-creator', 'owner');
    const line = `root ${JSON.stringify(p.mount)} is served by another instance: its holding directory records stateDir ${JSON.stringify(p.stateDir)}`;
    const runs = [
      ['--config', second, 'handle', join(p.mount, 'b')],
      ['--config', second, 'reconcile'],
      ['--config', second, 'recover'],
      // The original command line, with no config: the default (here: the environment's) stateDir.
      [p.pool, p.mount],
      [p.pool, p.mount, 'b', 'IN_CREATE,IN_ISDIR'],
    ];
    for (const args of runs) {
      const r = await cli(args, { stateDir: otherState });
      expect(r.exitCode, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(1);
      expect(r.stdout + r.stderr, args.join(' ')).toContain(line);
      expect(r.stdout + r.stderr).toContain(`this run uses ${JSON.stringify(otherState)}`);
      expect(r.stdout + r.stderr).toContain(`if the stateDir really moved, remove ${JSON.stringify(owner)} and run again`);
    }
    expect((await datasetStates(p)).has('b')).toBe(false);
    const doctor = await cli(['--config', second, 'doctor'], { stateDir: otherState });
    expect(doctor.stdout).toContain(line);
    // The stateDir moved for real: the administrator says so, and the root is served from there.
    await rm(owner);
    const b = await cli(['--config', second, 'handle', join(p.mount, 'b')], { stateDir: otherState });
    expect(b.exitCode, b.stderr).toBe(0);
    expect((await datasetStates(p)).get('b')).toBe('live');
    expect(existsSync(owner)).toBe(true);
    const refused = await cli(['--config', first, 'reconcile'], { stateDir: p.stateDir });
    expect(refused.exitCode).toBe(1);
    expect(refused.stdout + refused.stderr).toContain(`records stateDir ${JSON.stringify(otherState)}`);
  });
});
