/**
 * The operator is told the truth, once, through the real CLI on a real pool (issue 24):
 *
 *  - a refusal only a change to the directory or the config can lift (a name ZFS forbids) is
 *    said once (WARNING, notify), remembered, shown by status and doctor, counted in its own
 *    gauge and not as a failure; reconcile exits 0 at every sweep; a change re-arms it; a run
 *    over its quota likewise, refused before any copy and never copied;
 *  - a daemon killed with SIGKILL is seen as dead: its heartbeat gauge ages, status says so.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasetStates, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { parseExposition, sampleValue } from '../helpers/prom.js';
import { startDaemon } from '../helpers/daemon.js';
import { scaled } from '../helpers/time.js';

let p: TestPool;
let textfile: string;
let notified: string;

beforeAll(async () => {
  p = await createPool('truth', 256);
  textfile = join(p.work, 'zdc.prom');
  notified = join(p.work, 'notified.jsonl');
});
afterAll(async () => {
  await p?.destroy();
});

const metric = async (name: string, labels: Record<string, string> = {}): Promise<number> =>
  sampleValue(parseExposition(await readFile(textfile, 'utf8')), `zfs_dynamic_creator_${name}`, labels) ?? 0;

interface ReconcileJson {
  roots: { jobs: { name: string; outcome: string; message: string }[]; counts: Record<string, number> }[];
}

describe('refusals are remembered, not repeated', () => {
  it('a forbidden name across three sweeps: said once, gauge set, no failure counted, exit 0; a change re-arms it', async () => {
    const notify = ['notify', { command: ['/bin/sh', '-c', 'cat >> "$1"; echo >> "$1"', 'sh', notified], on: ['refused', 'failed'] }];
    const config = await writeConfig(p, fastPlugins({ more: [notify] }), { metrics: { textfile } }, 'refusals.json');
    const bad = 'bad name@x';
    await mkdir(join(p.mount, bad));
    const runs = [];
    for (let sweep = 0; sweep < 3; sweep++) {
      const r = await cli(['--config', config, 'reconcile', '--json'], { stateDir: p.stateDir });
      runs.push(r);
      expect(r.exitCode, r.stderr).toBe(0);
      const jobs = (JSON.parse(r.stdout) as ReconcileJson).roots[0]!.jobs;
      expect(jobs.find((j) => j.name === bad)?.outcome).toBe('refused');
      if (sweep > 0) expect(jobs.find((j) => j.name === bad)?.message).toMatch(/^refused \(remembered since /);
      expect(await metric('refused_directories', { root: p.mount })).toBe(1);
      expect(await metric('conversions_total', { root: p.mount, outcome: 'failed' })).toBe(0);
    }
    // Said once: a WARNING line and a notification in the first sweep only.
    expect(runs[0]!.stderr).toMatch(/WARNING.*bad name@x.*cannot become a ZFS dataset/);
    for (const r of runs.slice(1)) expect(r.stderr).not.toMatch(/WARNING|ERROR/);
    const notes = (await readFile(notified, 'utf8')).split('\n').filter((l) => l.trim() !== '');
    expect(notes.map((l) => (JSON.parse(l) as { outcome: string }).outcome)).toEqual(['refused']);

    // status and doctor show it as needing attention, with the reason.
    const status = await cli(['--config', config, 'status'], { stateDir: p.stateDir });
    expect(status.stdout).toMatch(/^ {2}refused +"bad name@x" needs attention: .*cannot become a ZFS dataset.*refused at /m);
    expect(status.stdout).toContain('0 directory(ies) waiting, 1 refused (need attention)');
    const doctor = await cli(['--config', config, 'doctor', '--json'], { stateDir: p.stateDir });
    const checks = (JSON.parse(doctor.stdout) as { checks: { check: string; status: string; detail: string }[] }).checks.filter(
      (c) => c.check === 'refusals',
    );
    expect(checks.map((c) => c.status)).toEqual(['warn']);
    expect(checks[0]!.detail).toMatch(/bad name@x.*needs attention: .*cannot become a ZFS dataset/);

    // A change to the directory re-arms it: tried (and said) again.
    await writeFile(join(p.mount, bad, 'new-file'), 'x');
    const after = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir });
    expect(after.exitCode).toBe(0);
    expect(after.stderr).toMatch(/WARNING.*bad name@x.*cannot become a ZFS dataset/);

    // handle tries again on request, and says it (a refusal of this run: exit 1).
    const handled = await cli(['--config', config, 'handle', join(p.mount, bad)], { stateDir: p.stateDir });
    expect(handled.exitCode).toBe(1);
    expect(handled.stderr).toMatch(/cannot become a ZFS dataset/);
    await rm(join(p.mount, bad), { recursive: true });
  });
  it('an over-quota run across three sweeps: refused before any copy, said once, gauge set, no failure counted, exit 0, never copied', async () => {
    const dir = join(p.mount, 'big-run');
    await mkdir(dir);
    const files = new Map<string, Buffer>();
    for (const name of ['a', 'b', 'c']) {
      files.set(name, randomBytes(4 << 20));
      await writeFile(join(dir, name), files.get(name)!);
    }
    // ZFS counts fresh writes late (zfs-fuse: seconds): wait until the root's referenced has them.
    const referenced = async (): Promise<number> => Number((await zfs('get', '-H', '-p', '-o', 'value', 'referenced', p.pool)).trim());
    for (const t = Date.now(); (await referenced()) < 12 << 20; await sleep(500)) {
      if (Date.now() - t > scaled(120_000)) throw new Error(`${p.pool} never counted the files written`);
      await execa('sync');
    }
    const config = await writeConfig(p, fastPlugins({ zfs: { properties: { quota: '8M' } } }), { metrics: { textfile } }, 'quota.json');
    const runs = [];
    for (let sweep = 0; sweep < 3; sweep++) {
      const r = await cli(['--config', config, 'reconcile', '--json'], { stateDir: p.stateDir });
      runs.push(r);
      expect(r.exitCode, r.stderr).toBe(0);
      const job = (JSON.parse(r.stdout) as ReconcileJson).roots[0]!.jobs.find((j) => j.name === 'big-run');
      expect(job?.outcome).toBe('refused');
      if (sweep > 0) expect(job?.message).toMatch(/^refused \(remembered since /);
      expect(await metric('refused_directories', { root: p.mount })).toBe(1);
      expect(await metric('conversions_total', { root: p.mount, outcome: 'failed' })).toBe(0);
      expect((await datasetStates(p)).has('big-run')).toBe(false);
    }
    expect(runs[0]!.stderr).toMatch(/WARNING.*"big-run" does not fit: .*quota is 8M.*nothing was copied/);
    // Not tried (nor copied) again: the later sweeps say nothing of it.
    for (const r of runs.slice(1)) expect(r.stderr).not.toMatch(/WARNING|ERROR|does not fit|create .*big-run|copy .*big-run/);
    for (const [name, data] of files) expect(await readFile(join(dir, name))).toEqual(data);
    await rm(dir, { recursive: true });
  });
});

describe("the daemon's liveness is a fact", () => {
  it('after SIGKILL the heartbeat ages and status says the daemon is not running', async () => {
    const config = await writeConfig(p, fastPlugins(), { metrics: { textfile }, watch: { sweepIntervalSeconds: 600 } }, 'daemon.json');
    const daemon = await startDaemon(p, config);
    const heartbeat = async (): Promise<number> => metric('daemon_heartbeat_timestamp_seconds');
    const deadline = Date.now() + scaled(20_000);
    while ((await heartbeat().catch(() => 0)) === 0 && Date.now() < deadline) await sleep(200);
    const first = await heartbeat();
    expect(first).toBeGreaterThan(0);
    // Kept fresh while it runs.
    while ((await heartbeat()) === first && Date.now() < deadline + scaled(10_000)) await sleep(200);
    const fresh = await heartbeat();
    expect(fresh).toBeGreaterThan(first);
    const running = await cli(['--config', config, 'status'], { stateDir: p.stateDir });
    expect(running.stdout).toMatch(/^daemon \(pid \d+, since /m);

    daemon.signal('SIGKILL');
    await daemon.stop();
    // The heartbeat stops: it only ages from now on (an alert on time() - heartbeat fires).
    await sleep(scaled(3000));
    const dead = await heartbeat();
    expect(dead).toBeLessThanOrEqual(fresh + 2);
    expect(await metric('daemon_up').catch(() => 0)).toBe(0);
    const status = await cli(['--config', config, 'status'], { stateDir: p.stateDir });
    expect(status.stdout).toMatch(/^daemon not running \(pid \d+, last seen \S+/m);
    const json = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir })).stdout) as {
      daemon: unknown;
      lastDaemon: { pid: number; updatedAt: string } | null;
    };
    expect(json.daemon).toBeNull();
    expect(json.lastDaemon?.pid).toBeGreaterThan(0);
  });
});

describe('one config checker', () => {
  it('check-config reports every mistake at once, each with its suggestion, in one wording, also as JSON', async () => {
    const three = join(p.work, 'three-mistakes.json');
    await writeFile(
      three,
      JSON.stringify({
        statedir: p.stateDir,
        watch: { sweepIntervalSecs: 5 },
        metrics: { textFile: textfile },
        roots: [{ rootfs: p.pool, rootdir: p.mount, plugins: fastPlugins() }],
      }),
    );
    const r = await cli(['--config', three, 'check-config'], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`config ${three}: statedir: unknown key "statedir" (did you mean "stateDir"?)`);
    expect(r.stderr).toContain(
      `config ${three}: watch.sweepIntervalSecs: unknown key "sweepIntervalSecs" (did you mean "sweepIntervalSeconds"?)`,
    );
    expect(r.stderr).toContain(`config ${three}: metrics.textFile: unknown key "textFile" (did you mean "textfile"?)`);
    const json = JSON.parse((await cli(['--config', three, 'check-config', '--json'], { stateDir: p.stateDir })).stdout) as {
      ok: boolean;
      problems: string[];
    };
    expect(json.ok).toBe(false);
    expect(json.problems).toEqual(
      expect.arrayContaining([
        expect.stringContaining('did you mean "stateDir"'),
        expect.stringContaining('did you mean "sweepIntervalSeconds"'),
        expect.stringContaining('did you mean "textfile"'),
      ]),
    );

    // What only doctor found before: a rootdir that is not the dataset's mountpoint, a ZFS property
    // name the pool does not know; and plugin options worded as config keys are.
    const wrong = join(p.work, 'wrong-root.json');
    const plugins = fastPlugins({ zfs: { properties: { compresion: 'on' } } });
    await writeFile(wrong, JSON.stringify({ stateDir: p.stateDir, roots: [{ rootfs: p.pool, rootdir: p.work, plugins }] }));
    const w = await cli(['--config', wrong, 'check-config'], { stateDir: p.stateDir });
    expect(w.exitCode).toBe(2);
    expect(w.stderr).toContain(`is not where ${p.pool} is mounted`);
    expect(w.stderr).toMatch(/compresion: .*has no property "compresion" \(did you mean "compression"\?\)/);
    const options = join(p.work, 'options.json');
    await writeFile(
      options,
      JSON.stringify({
        stateDir: p.stateDir,
        roots: [{ rootfs: p.pool, rootdir: p.mount, plugins: [['quiet-wait', { quietSecond: 1, maxWaitSecond: 2 }], 'zfs', 'rsync'] }],
      }),
    );
    const o = await cli(['--config', options, 'check-config'], { stateDir: p.stateDir });
    expect(o.exitCode).toBe(2);
    expect(o.stderr).toMatch(/quietSecond: unknown key "quietSecond" \(did you mean "quietSeconds"\?\)/);
    expect(o.stderr).toMatch(/maxWaitSecond: unknown key "maxWaitSecond" \(did you mean "maxWaitSeconds"\?\)/);
  });
});

describe('status from the same facts as the log', () => {
  it("during a copy: its step and progress, moving; during the grace period: the wait's own since", async () => {
    // rsync alone, slowed down, so that the copy's progress can be seen moving
    const rsync = { parallelCopy: false, flags: ['-aHAX', '--numeric-ids', '--bwlimit=2000'], graceSeconds: 4 };
    const config = await writeConfig(p, fastPlugins({ rsync }), { watch: { sweepIntervalSeconds: 600 } }, 'status.json');
    await startDaemon(p, config);
    const dir = join(p.mount, 'slow-run');
    await mkdir(dir);
    for (let i = 0; i < 20; i++) await writeFile(join(dir, `f${i}`), randomBytes(1_000_000));
    type Active = {
      name: string;
      phase: string;
      waiting?: string;
      since: string;
      jobSince: string;
      step?: string;
      progress?: { bytes?: number; totalBytes?: number; bytesPerSecond?: number };
    };
    const active = async (): Promise<Active | undefined> => {
      const r = await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir });
      return (JSON.parse(r.stdout) as { daemon: { active: Active[] } | null }).daemon?.active.find((a) => a.name === 'slow-run');
    };
    const until = async (what: (a: Active) => boolean): Promise<Active> => {
      const deadline = Date.now() + scaled(60_000);
      for (;;) {
        const a = await active();
        if (a && what(a)) return a;
        if (Date.now() > deadline) throw new Error(`not seen in time; last: ${JSON.stringify(a)}`);
        await sleep(200);
      }
    };
    const copying = await until((a) => a.step === 'migrate/copy' && (a.progress?.bytes ?? 0) > 0);
    expect(copying.progress?.totalBytes).toBeGreaterThan(0);
    const later = await until((a) => a.step !== 'migrate/copy' || (a.progress?.bytes ?? 0) > (copying.progress?.bytes ?? 0));
    if (later.step === 'migrate/copy') expect(later.progress?.bytes).toBeGreaterThan(copying.progress!.bytes!);
    const text = (await cli(['--config', config, 'status'], { stateDir: p.stateDir })).stdout;
    expect(text).toMatch(/"slow-run" phase/);
    const grace = await until((a) => a.waiting === 'grace period');
    expect(Date.parse(grace.since)).toBeGreaterThan(Date.parse(grace.jobSince));
    expect(Date.parse(grace.since)).toBeGreaterThan(Date.parse(copying.jobSince) + 1000);
  });
});
