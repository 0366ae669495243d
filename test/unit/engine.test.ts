/**
 * The engine, the job and the journal, with in-memory fake plugins: every phase failing before
 * and after the commit point, recovery of committed and uncommitted records, dry run, every
 * outcome kind, an untrusted record, a lock held by another process. No ZFS, no rsync: a temp
 * directory is the root. Runs in a few seconds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, realpath, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RootEngine, summary } from '../../src/core/engine.js';
import { AdvisedError } from '../../src/core/errors.js';
import { jobPaths } from '../../src/core/places.js';
import type { Hooks } from '../../src/core/hooks.js';
import { newRecord } from '../../src/core/job.js';
import { jobId } from '../../src/core/journal.js';
import { lockPath } from '../../src/core/lock.js';
import { Slots } from '../../src/core/slots.js';
import type { Assessment, JobRecord, JournalledPhase, LogRecord } from '../../src/core/index.js';

let tmp: string;
let rootdir: string;
let stateDir: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'zdc-engine-')));
  rootdir = join(tmp, 'root');
  stateDir = join(tmp, 'state');
  await mkdir(rootdir);
  await mkdir(stateDir, { mode: 0o700 });
  await mkdir(join(rootdir, 'd'));
});
afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await rm(tmp, { recursive: true, force: true });
});

interface Behaviour {
  /** The phase whose tap throws ('swap-after-commit': the swap tap, once it has committed). */
  failAt?: JournalledPhase | 'swap-after-commit';
  skip?: string;
  defer?: string;
  assess?: Assessment;
  rollbackFails?: boolean;
}

/** A fake filesystem-and-copy plugin: taps what the builtins tap and records every call. */
function fakePlugin(hooks: Hooks, behaviour: Behaviour = {}) {
  const calls: string[] = [];
  const steps: string[] = [];
  const fail = (where: string) => {
    throw new Error(`${where} broke on purpose`);
  };
  hooks.filter.tap('fake', () => {
    calls.push('filter');
    return behaviour.skip !== undefined ? { skip: behaviour.skip } : undefined;
  });
  hooks.wait.tapPromise('fake', async () => {
    calls.push('wait');
    return behaviour.defer !== undefined ? { defer: behaviour.defer } : undefined;
  });
  hooks.provision.tapPromise('fake', async (job) => {
    calls.push('provision');
    await job.step('create', 'create the new filesystem', async () => undefined);
    if (!job.dryRun) await job.set({ filesystem: `tank/root/${job.name}`, staging: jobPaths(job.root.rootdir, job.name).staging });
    if (behaviour.failAt === 'provision') fail('provision');
  });
  hooks.migrate.tapPromise('fake', async (job) => {
    calls.push('migrate');
    await job.step('copy', 'copy', async () => undefined);
    if (behaviour.failAt === 'migrate') fail('migrate');
  });
  hooks.swap.tapPromise('fake', async (job) => {
    calls.push('swap');
    if (behaviour.failAt === 'swap') fail('swap');
    await job.commit();
    await job.step('mount-in-place', 'mount in place', async () => undefined);
    if (behaviour.failAt === 'swap-after-commit') fail('swap');
  });
  hooks.cleanup.tapPromise('fake', async () => {
    calls.push('cleanup');
    if (behaviour.failAt === 'cleanup') fail('cleanup');
  });
  hooks.publish.tapPromise('fake', async () => {
    calls.push('publish');
    if (behaviour.failAt === 'publish') fail('publish');
  });
  hooks.rollback.tapPromise('fake', async (job) => {
    calls.push(`rollback(committed=${job.record.committed})`);
    if (behaviour.rollbackFails) fail('rollback');
  });
  hooks.assess.tapPromise('fake', async () => {
    calls.push('assess');
    return behaviour.assess;
  });
  hooks.outcome.tapPromise('fake', async (_job, outcome) => {
    calls.push(`outcome:${outcome.kind}`);
  });
  hooks.step.tapPromise('fake', async (_job, step, when) => {
    steps.push(`${step}:${when}`);
  });
  return { calls, steps };
}

function engine(options: { dryRun?: boolean } = {}) {
  const records: LogRecord[] = [];
  const e = new RootEngine({ rootfs: 'tank/root', rootdir, stateDir, dryRun: options.dryRun ?? false, sinks: [(r) => records.push(r)] });
  return { engine: e, records };
}

const id = () => jobId(rootdir, 'd');

describe('a job through the lifecycle', () => {
  it('runs every phase in order, journals every step, and forgets the job once converted', async () => {
    const { engine: e } = engine();
    const { calls, steps } = fakePlugin(e.hooks);
    const outcome = await e.handle('d');
    expect(outcome).toMatchObject({ kind: 'converted', message: 'converted into tank/root/d' });
    expect(calls).toEqual(['filter', 'wait', 'provision', 'migrate', 'swap', 'publish', 'cleanup', 'outcome:converted']);
    expect(steps).toEqual([
      'provision/create:before',
      'provision/create:end',
      'provision/create:after',
      'migrate/copy:before',
      'migrate/copy:end',
      'migrate/copy:after',
      'swap/mount-in-place:before',
      'swap/mount-in-place:end',
      'swap/mount-in-place:after',
    ]);
    expect(await e.journal.read(id())).toBeUndefined();
    expect(await readdir(join(stateDir, 'locks'))).toEqual([]);
  });

  for (const phase of ['provision', 'migrate', 'swap'] as const) {
    it(`${phase} failing before the commit point: rolled back, the journal forgets the job`, async () => {
      const { engine: e } = engine();
      const { calls } = fakePlugin(e.hooks, { failAt: phase });
      const outcome = await e.handle('d');
      expect(outcome.kind).toBe('failed');
      expect(outcome.message).toBe(`${phase} failed: ${phase} broke on purpose; rolled back, the original directory is untouched`);
      expect(calls.slice(-2)).toEqual(['rollback(committed=false)', 'outcome:failed']);
      expect(calls).not.toContain(phase === 'swap' ? 'cleanup' : 'swap');
      expect(await e.journal.read(id())).toBeUndefined();
    });
  }

  for (const phase of ['swap-after-commit', 'cleanup', 'publish'] as const) {
    it(`${phase} failing after the commit point: nothing undone, the journal keeps the job as incomplete`, async () => {
      const { engine: e } = engine();
      const { calls } = fakePlugin(e.hooks, { failAt: phase });
      const outcome = await e.handle('d');
      expect(outcome.kind).toBe('failed');
      expect(outcome.message).toMatch(
        /the job is past its commit point, so nothing is undone; the next run for this root, or 'zfs-dynamic-creator recover', finishes it$/,
      );
      expect(calls.some((c) => c.startsWith('rollback'))).toBe(false);
      const record = await e.journal.read(id());
      expect(record).toMatchObject({
        committed: true,
        status: 'incomplete',
        phase: phase === 'swap-after-commit' ? 'swap' : phase,
        filesystem: 'tank/root/d',
      });
    });
  }

  it('a rollback that fails keeps the job in the journal for recovery', async () => {
    const { engine: e } = engine();
    fakePlugin(e.hooks, { failAt: 'migrate', rollbackFails: true });
    const outcome = await e.handle('d');
    expect(outcome.message).toBe(
      "migrate failed: migrate broke on purpose; rollback failed: rollback broke on purpose; the next run for this root, or 'zfs-dynamic-creator recover', tries again",
    );
    expect(await e.journal.read(id())).toMatchObject({ committed: false, status: 'incomplete' });
  });

  /** A swap that moves the original aside (as the zfs plugin does) and a cleanup that fails, after removing it or not. */
  const failingAfterAside = (hooks: Hooks, cleanup: { remove: boolean; error: Error }) => {
    hooks.swap.tapPromise('mover', async (job) => {
      const { aside } = jobPaths(job.root.rootdir, job.name);
      await rename(job.path, aside);
      await job.setJournalled({ aside });
      await mkdir(job.path);
    });
    fakePlugin(hooks);
    hooks.cleanup.tapPromise('remover', async (job) => {
      if (cleanup.remove) await rm(jobPaths(job.root.rootdir, job.name).aside, { recursive: true });
      throw cleanup.error;
    });
  };

  it('a failure past the commit point says where the original is kept while it is there, and not once it was removed', async () => {
    const kept = engine();
    failingAfterAside(kept.engine.hooks, { remove: false, error: new Error('finish broke') });
    const aside = jobPaths(rootdir, 'd').aside;
    expect((await kept.engine.handle('d')).message).toBe(
      `cleanup failed: finish broke; the job is past its commit point, so nothing is undone; the original is kept at ${JSON.stringify(aside)}; the next run for this root, or 'zfs-dynamic-creator recover', finishes it`,
    );
    await rm(jobPaths(rootdir, 'd').holding, { recursive: true });
    await rm(join(stateDir, 'jobs'), { recursive: true });
    const removed = engine();
    failingAfterAside(removed.engine.hooks, { remove: true, error: new Error('finish broke') });
    expect((await removed.engine.handle('d')).message).toBe(
      "cleanup failed: finish broke; the job is past its commit point, so nothing is undone; the next run for this root, or 'zfs-dynamic-creator recover', finishes it",
    );
  });

  it("an AdvisedError's own advice is not repeated; the same words in any other error do not count", async () => {
    const advice = "the original is kept aside: settle it, then run 'zfs-dynamic-creator recover'";
    const advised = engine();
    failingAfterAside(advised.engine.hooks, { remove: false, error: new AdvisedError(advice) });
    expect((await advised.engine.handle('d')).message).toBe(
      `cleanup failed: ${advice} (the job is past its commit point: nothing is undone)`,
    );
    await rm(jobPaths(rootdir, 'd').holding, { recursive: true });
    await rm(join(stateDir, 'jobs'), { recursive: true });
    const plain = engine();
    failingAfterAside(plain.engine.hooks, { remove: true, error: new Error(advice) });
    expect((await plain.engine.handle('d')).message).toBe(
      `cleanup failed: ${advice}; the job is past its commit point, so nothing is undone; the next run for this root, or 'zfs-dynamic-creator recover', finishes it`,
    );
  });

  it("names the plugin in the lines its taps log through the job's logger, and no plugin in the core's", async () => {
    const { engine: e, records } = engine();
    fakePlugin(e.hooks);
    e.hooks.publish.tapPromise('other', async (job) => job.log.info('published elsewhere'));
    await e.handle('d');
    const by = (message: string) => records.find((r) => r.message === message);
    expect(by('copy')).toMatchObject({ plugin: 'fake', dir: 'd', step: 'migrate/copy' });
    expect(by('published elsewhere')).toMatchObject({ plugin: 'other', dir: 'd' });
    expect(by('converted into tank/root/d')).not.toHaveProperty('plugin');
  });

  it('says skipped, deferred and failed (refused) without journalling anything', async () => {
    const skipped = engine();
    const s = fakePlugin(skipped.engine.hooks, { skip: 'not ours' });
    expect(await skipped.engine.handle('d')).toMatchObject({ kind: 'skipped', message: 'skipped: not ours' });
    expect(s.calls).toEqual(['filter', 'outcome:skipped']);
    const deferred = engine();
    const d = fakePlugin(deferred.engine.hooks, { defer: 'busy files' });
    expect(await deferred.engine.handle('d')).toMatchObject({ kind: 'deferred', message: 'deferred: busy files' });
    expect(d.calls).toEqual(['filter', 'wait', 'outcome:deferred']);
    const refused = engine();
    const r = fakePlugin(refused.engine.hooks);
    expect(await refused.engine.handle('no-such-dir')).toMatchObject({
      kind: 'failed',
      message: expect.stringContaining('vanished before its turn'),
    });
    expect(await refused.engine.handle('a/b')).toMatchObject({
      kind: 'failed',
      message: expect.stringContaining('is not a directory name'),
    });
    expect(r.calls).toEqual(['outcome:failed', 'outcome:failed']);
    expect(await refused.engine.journal.list()).toEqual([]);
  });

  it('a tap returning the wrong shape fails the job with a message naming it', async () => {
    const { engine: e } = engine();
    e.hooks.filter.tap('sloppy', () => ({ skipped: true }) as never);
    fakePlugin(e.hooks);
    const outcome = await e.handle('d');
    expect(outcome).toMatchObject({
      kind: 'failed',
      message: expect.stringMatching(/^plugin "sloppy": its filter tap returned \{"skipped":true\}/),
    });
  });
});

describe('dry run', () => {
  it('runs the dry-run hooks only, writes nothing, and says what it would do', async () => {
    const { engine: e, records } = engine({ dryRun: true });
    const { calls, steps } = fakePlugin(e.hooks);
    const outcome = await e.handle('d');
    expect(outcome).toMatchObject({ kind: 'converted', message: 'dry run: would convert; nothing was changed' });
    // wait does not run in a dry run (the contract says so); the step hook neither.
    expect(calls).toEqual(['filter', 'provision', 'migrate', 'swap', 'publish', 'cleanup', 'outcome:converted']);
    expect(steps).toEqual([]);
    expect(records.map((r) => r.message)).toEqual(
      expect.arrayContaining(['would wait until the directory is quiet', 'would create the new filesystem', 'would copy']),
    );
    expect(await readdir(stateDir)).toEqual([]);
    expect(await readdir(rootdir)).toEqual(['d']);
  });

  it('a failing phase is not rolled back in a dry run (nothing was changed)', async () => {
    const { engine: e } = engine({ dryRun: true });
    const { calls } = fakePlugin(e.hooks, { failAt: 'migrate' });
    expect(await e.handle('d')).toMatchObject({ kind: 'failed', message: 'migrate failed: migrate broke on purpose' });
    expect(calls).toEqual(['filter', 'provision', 'migrate', 'outcome:failed']);
  });
});

describe('recovery', () => {
  async function leave(fields: Partial<JobRecord>): Promise<JobRecord> {
    const { engine: e } = engine();
    const record = { ...newRecord(e.context, id(), 'd'), status: 'incomplete' as const, phase: 'migrate' as const, ...fields };
    await e.journal.write(record);
    return record;
  }

  it('an uncommitted record is rolled back and forgotten', async () => {
    const record = await leave({ committed: false });
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks, { assess: { committed: false } });
    const outcome = await e.recover(record, { fromJournal: true });
    expect(outcome.kind).toBe('rolled-back');
    expect(calls).toEqual(['assess', 'rollback(committed=false)']);
    expect(await e.journal.read(id())).toBeUndefined();
  });

  it('an uncommitted record with nothing left is forgotten without a rollback', async () => {
    const record = await leave({ committed: false });
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks, { assess: { committed: false, nothingLeft: true } });
    expect(await e.recover(record)).toMatchObject({
      kind: 'rolled-back',
      message: expect.stringContaining('nothing of the interrupted job was left'),
    });
    expect(calls).toEqual(['assess']);
  });

  it('a committed record is finished, never rolled back, even when assess says it is not committed', async () => {
    const record = await leave({ committed: true, phase: 'cleanup', filesystem: 'tank/root/d' });
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks, { assess: { committed: false } });
    const outcome = await e.recover(record, { fromJournal: true });
    expect(outcome).toMatchObject({ kind: 'recovered', message: 'recovery: finished an interrupted job; converted into tank/root/d' });
    expect(calls).toEqual(['assess', 'swap', 'publish', 'cleanup']);
    expect(await e.journal.read(id())).toBeUndefined();
  });

  it("an uncommitted record is finished when the filesystem's own record says it committed", async () => {
    const record = await leave({ committed: false });
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks, { assess: { committed: true, fields: { filesystem: 'tank/root/d' } } });
    expect(await e.recover(record)).toMatchObject({ kind: 'recovered' });
    expect(calls).toEqual(['assess', 'swap', 'publish', 'cleanup']);
  });

  it('a committed job whose finishing fails stays in the journal as incomplete', async () => {
    const record = await leave({ committed: true, phase: 'cleanup' });
    const { engine: e } = engine();
    fakePlugin(e.hooks, { assess: { committed: true }, failAt: 'publish' });
    expect(await e.recover(record)).toMatchObject({ kind: 'failed', message: 'recovery failed: publish broke on purpose' });
    expect(await e.journal.read(id())).toMatchObject({ committed: true, status: 'incomplete', phase: 'publish' });
  });

  it('handle finishes the leftover job of its directory first, then converts nothing more when it was committed', async () => {
    await leave({ committed: true, phase: 'swap', filesystem: 'tank/root/d' });
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks, { assess: { committed: true } });
    expect(await e.handle('d')).toMatchObject({ kind: 'recovered' });
    expect(calls).toEqual(['assess', 'swap', 'publish', 'cleanup', 'outcome:recovered']);
  });

  it('in a dry run, an interrupted uncommitted job is not rolled back: its record and everything on disk stay', async () => {
    const record = await leave({ committed: false });
    const { engine: e, records } = engine({ dryRun: true });
    const { calls } = fakePlugin(e.hooks, { assess: { committed: false } });
    expect(await e.handle('d')).toMatchObject({ kind: 'converted', message: 'dry run: would convert; nothing was changed' });
    expect(calls).toEqual(['assess', 'filter', 'provision', 'migrate', 'swap', 'publish', 'cleanup', 'outcome:converted']);
    expect(records.map((r) => r.message)).toContain('would undo an uncommitted job');
    expect(await e.journal.read(id())).toEqual(record);
  });

  it('a record whose paths are not the ones the tool derives is refused and left alone', async () => {
    const record = await leave({ committed: false, aside: '/etc' });
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks, { assess: { committed: false } });
    const outcome = await e.recover(record, { fromJournal: true });
    expect(outcome.kind).toBe('failed');
    expect(outcome.message).toMatch(/^journal record \w+ is not trusted \(its aside path "\/etc" is not the one the tool derives/);
    expect(calls).toEqual([]);
    expect(await e.journal.read(id())).toMatchObject({ aside: '/etc' });
  });

  it('a record of another root is refused', async () => {
    const record = await leave({ committed: false, rootfs: 'tank/other' });
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks);
    const outcome = await e.recover(record);
    expect(calls).toEqual([]);
    expect(outcome).toMatchObject({ kind: 'failed', message: expect.stringContaining('its rootfs "tank/other" is not "tank/root"') });
  });

  it('recoverRoot finishes every interrupted job of the root', async () => {
    await leave({ committed: true });
    const { engine: e } = engine();
    e.hooks.survey.tapPromise('fake', async (survey) => survey);
    const { calls } = fakePlugin(e.hooks, { assess: { committed: true } });
    const results = await e.recoverRoot();
    expect(results.map((r) => [r.name, r.outcome.kind])).toEqual([['d', 'recovered']]);
    expect(calls).toEqual(['assess', 'swap', 'publish', 'cleanup']);
  });
});

describe('the survey', () => {
  it("finds the root's directories by the listing's own types: not files, not symbolic links, not helpers", async () => {
    await mkdir(join(rootdir, 'with space\nand newline'));
    await mkdir(join(rootdir, '.zfs')); // a plain directory of that name: not ZFS's control directory
    await writeFile(join(rootdir, 'file'), '');
    await symlink(join(rootdir, 'd'), join(rootdir, 'link'));
    await mkdir(Buffer.concat([Buffer.from(`${rootdir}/`), Buffer.from([0x6e, 0xff])]));
    const { engine: e, records } = engine();
    const survey = await e.survey();
    expect([...survey.directories].sort()).toEqual(['.zfs', 'd', 'with space\nand newline']);
    expect([...survey.ignored]).toEqual(['.zfs-dynamic-creator']);
    expect(records.filter((r) => r.level === 'warning').map((r) => r.message)).toEqual([expect.stringContaining('is not valid UTF-8')]);
  });
});

describe('locks', () => {
  /** Another process holding the job's kernel lock (flock on its own open file), as a running job does. */
  async function holdLock(path: string): Promise<ChildProcess> {
    const script = `
      const fs = require('node:fs');
      const { spawnSync } = require('node:child_process');
      fs.mkdirSync(require('node:path').dirname(process.argv[1]), { recursive: true, mode: 0o700 });
      const fd = fs.openSync(process.argv[1], fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
      const r = spawnSync('flock', ['--nonblock', '3'], { stdio: ['ignore', 'ignore', 'inherit', fd] });
      console.log(r.status === 0 ? 'locked' : 'not locked');
      setInterval(() => undefined, 60000);`;
    const child = spawn(process.execPath, ['-e', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    const [line] = await (async () => {
      for await (const l of createInterface({ input: child.stdout! })) return [l];
      return [''];
    })();
    expect(line).toBe('locked');
    return child;
  }

  it("a job whose lock another process holds is left alone: busy, no phase runs after the filters' decision", async () => {
    const child = await holdLock(lockPath(stateDir, id()));
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks);
    const outcome = await e.handle('d');
    expect(outcome).toMatchObject({ kind: 'busy', message: 'left alone: another zfs-dynamic-creator process is handling this directory' });
    expect(calls).toEqual(['filter', 'outcome:busy']);
    const record = await leaveRecord();
    expect(await e.recover(record)).toMatchObject({ kind: 'busy' });
    // The kernel drops the lock when its holder dies: the next run converts.
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    await e.journal.remove(id());
    expect(await e.handle('d')).toMatchObject({ kind: 'converted' });
  });

  async function leaveRecord(): Promise<JobRecord> {
    const { engine: e } = engine();
    const record = { ...newRecord(e.context, id(), 'd'), status: 'incomplete' as const };
    await e.journal.write(record);
    return record;
  }
});

describe('waiting is not work', () => {
  it('with one work slot, a job in its grace period (job.waiting) lets another job copy; filter and wait hold no slot', async () => {
    await mkdir(join(rootdir, 'e'));
    const { engine: e } = engine();
    const slots = new Slots(1);
    const events: string[] = [];
    let eCopied!: () => void;
    const eHasCopied = new Promise<void>((resolve) => (eCopied = resolve));
    e.hooks.wait.tapPromise('w', async (job) => {
      events.push(`${job.name}:wait busy=${slots.busy}`);
      return undefined;
    });
    e.hooks.provision.tapPromise('p', async (job) => {
      await job.set({ filesystem: `tank/root/${job.name}`, staging: jobPaths(job.root.rootdir, job.name).staging });
    });
    e.hooks.migrate.tapPromise('m', async (job) => {
      events.push(`${job.name}:copy busy=${slots.busy}`);
      if (job.name === 'e') eCopied();
    });
    e.hooks.swap.tapPromise('s', async (job) => {
      await job.commit();
    });
    e.hooks.cleanup.tapPromise('c', async (job) => {
      if (job.name !== 'd') return;
      // d waits for its grace period until e has copied: with its slot held, e could never copy.
      await job.waiting('grace period', async () => {
        events.push(`d:grace active=${JSON.stringify(e.active().find((a) => a.name === 'd'))}`);
        await eHasCopied;
      });
      events.push(`d:remove busy=${slots.busy}`);
    });
    const d = e.handle('d', { slots });
    await sleep(20);
    const eJob = e.handle('e', { slots });
    const [od, oe] = await Promise.all([d, eJob]);
    expect([od.kind, oe.kind]).toEqual(['converted', 'converted']);
    expect(events).toContain('e:copy busy=1');
    expect(events.find((x) => x.startsWith('d:grace'))).toMatch(
      /^d:grace active=\{"name":"d","phase":"cleanup","working":false,"waiting":"grace period"/,
    );
    expect(events).toContain('d:remove busy=1');
    expect(slots.busy).toBe(0);
    expect(e.active()).toEqual([]);
  });

  it('a job stopped while it waits for a work slot is deferred, its directory untouched', async () => {
    const { engine: e } = engine();
    const slots = new Slots(1);
    await slots.acquire();
    const stop = new AbortController();
    const calls: string[] = [];
    e.hooks.provision.tapPromise('p', async () => {
      calls.push('provision');
    });
    const outcome = e.handle('d', { slots, signal: stop.signal });
    // Until it waits for the slot (prepare, the filters and the lock come first).
    for (let i = 0; i < 200 && e.active()[0]?.waiting !== 'a work slot'; i++) await sleep(20);
    expect(e.active()).toMatchObject([{ name: 'd', working: false, waiting: 'a work slot' }]);
    stop.abort();
    expect(await outcome).toMatchObject({
      kind: 'deferred',
      message: 'deferred: stopped before its turn to work; the directory is as it was',
    });
    expect(calls).toEqual([]);
    expect(await readdir(join(stateDir))).not.toContain('jobs');
  });
});

describe('the filters decide first', () => {
  it('a name they leave alone costs no environment check, no recovery and no lock', async () => {
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks, { skip: 'not ours' });
    e.hooks.prepare.tapPromise('count', async () => {
      calls.push('prepare');
    });
    const outcome = await e.handle('d', { recoverRoot: true });
    expect(outcome).toMatchObject({ kind: 'skipped', message: 'skipped: not ours' });
    expect(calls).toEqual(['filter', 'outcome:skipped']);
    expect(await readdir(stateDir)).toEqual([]);
  });

  it('a name they take is decided once, then converted; with a job for it in the journal, recovery comes first and they decide after it', async () => {
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks);
    expect((await e.handle('d')).kind).toBe('converted');
    expect(calls.filter((c) => c === 'filter')).toHaveLength(1);
    calls.length = 0;
    await mkdir(join(rootdir, 'd2'));
    const record: JobRecord = { ...newRecord(e.context, jobId(rootdir, 'd2'), 'd2'), phase: 'provision', status: 'running' };
    await e.journal.write(record);
    expect((await e.handle('d2')).kind).toBe('converted');
    expect(calls.slice(0, 3)).toEqual(['assess', 'rollback(committed=false)', 'filter']);
  });
});

describe('handle --no-wait (deferCleanup)', () => {
  it('returns once committed and published, the cleanup left in the journal; the next run for the root finishes it, a --no-wait run does not', async () => {
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks);
    const outcome = await e.handle('d', { deferCleanup: true });
    expect(outcome.kind).toBe('converted');
    expect(outcome.message).toMatch(/^converted into tank\/root\/d, live and published; the cleanup is left to the next run for this root/);
    expect(calls).toEqual(['filter', 'wait', 'provision', 'migrate', 'swap', 'publish', 'outcome:converted']);
    expect(await e.journal.read(id())).toMatchObject({ committed: true, status: 'cleanup-pending', phase: 'publish' });
    // Another --no-wait run for the root leaves it alone.
    await mkdir(join(rootdir, 'e'));
    calls.length = 0;
    await e.handle('e', { deferCleanup: true, recoverRoot: true });
    expect(calls).not.toContain('assess');
    // A run that waits finishes it first: swap (catch-up), publish and cleanup again.
    await mkdir(join(rootdir, 'f'));
    calls.length = 0;
    expect((await e.handle('f', { recoverRoot: true })).kind).toBe('converted');
    // Beside its own job (not before it), and finished by the time the run ends.
    expect(calls).toContain('assess');
    expect(calls.filter((c) => c === 'cleanup')).toHaveLength(3); // d's and e's left cleanups, and f's own
    expect(await e.journal.read(id())).toBeUndefined();
  });
});

describe('a stop (SIGTERM) is a clean stop, not a failure', () => {
  /** A copy that runs until the job's signal aborts it, as rsync does when cancelled. */
  function stoppingCopy(hooks: Hooks, controller: AbortController, afterCommit = false) {
    const calls: string[] = [];
    hooks.provision.tapPromise('stop', async (job) => {
      await job.set({ filesystem: `tank/root/${job.name}`, staging: jobPaths(job.root.rootdir, job.name).staging });
    });
    const stopHere = async (job: { signal: AbortSignal }): Promise<void> => {
      controller.abort();
      await new Promise<void>((resolve) => (job.signal.aborted ? resolve() : job.signal.addEventListener('abort', () => resolve())));
      throw new Error('rsync was cancelled');
    };
    hooks.migrate.tapPromise('stop', async (job) => {
      calls.push('migrate');
      if (!afterCommit) await stopHere(job);
    });
    hooks.swap.tapPromise('stop', async (job) => {
      calls.push('swap');
      await job.commit();
    });
    hooks.cleanup.tapPromise('stop', async (job) => {
      calls.push('cleanup');
      if (afterCommit) await stopHere(job);
    });
    hooks.rollback.tapPromise('stop', async () => {
      calls.push('rollback');
    });
    return calls;
  }

  it('during the copy: rolled back, deferred (tried again), logged at notice with "stopped", no error line', async () => {
    const { engine: e, records } = engine();
    const controller = new AbortController();
    const calls = stoppingCopy(e.hooks, controller);
    const outcome = await e.handle('d', { signal: controller.signal });
    expect(outcome).toMatchObject({
      kind: 'deferred',
      message: 'stopped during migrate: rsync was cancelled; rolled back, the original directory is untouched; it will be tried again',
    });
    expect(calls).toEqual(['migrate', 'rollback']);
    const last = records.filter((r) => r.step === 'outcome');
    expect(last.map((r) => [r.level, r.message])).toEqual([['notice', outcome.message]]);
    expect(records.filter((r) => r.level === 'error')).toEqual([]);
    expect(await e.journal.read(id())).toBeUndefined();
  });

  it('past the commit point: left for the next run (journal kept), deferred at notice', async () => {
    const { engine: e, records } = engine();
    const controller = new AbortController();
    const calls = stoppingCopy(e.hooks, controller, true);
    const outcome = await e.handle('d', { signal: controller.signal });
    expect(outcome.kind).toBe('deferred');
    expect(outcome.message).toMatch(
      /^stopped during cleanup: rsync was cancelled; the job is past its commit point, so nothing is undone.*'zfs-dynamic-creator recover', finishes it$/,
    );
    expect(calls).toEqual(['migrate', 'swap', 'cleanup']);
    expect(records.filter((r) => r.level === 'error')).toEqual([]);
    expect((await e.journal.read(id()))?.committed).toBe(true);
  });

  it('a rollback that fails during a stop is still a failure, at error', async () => {
    const { engine: e, records } = engine();
    const controller = new AbortController();
    stoppingCopy(e.hooks, controller);
    e.hooks.rollback.tapPromise('broken', async () => {
      throw new Error('rollback broke on purpose');
    });
    const outcome = await e.handle('d', { signal: controller.signal });
    expect(outcome.kind).toBe('failed');
    expect(outcome.message).toMatch(/^stopped during migrate: rsync was cancelled; rollback failed: rollback broke on purpose/);
    expect(records.filter((r) => r.level === 'error' && r.step === 'outcome')).toHaveLength(1);
  });

  it('without a stop, the same error is a failure as before', async () => {
    const { engine: e, records } = engine();
    const { calls } = fakePlugin(e.hooks, { failAt: 'migrate' });
    const outcome = await e.handle('d');
    expect(outcome).toMatchObject({
      kind: 'failed',
      message: 'migrate failed: migrate broke on purpose; rolled back, the original directory is untouched',
    });
    expect(calls).toContain('rollback(committed=false)');
    expect(records.filter((r) => r.step === 'outcome').map((r) => r.level)).toEqual(['error']);
  });
});

describe('the summary at the end of a job', () => {
  it('says files, MiB, seconds and rate, or nothing when the copy was not counted', () => {
    expect(summary({ files: 20_000, bytes: 336 * 2 ** 20 }, 42_000)).toBe(': 20,000 files, 336.0 MiB in 42.0 s (8.0 MiB/s)');
    expect(summary({ files: 1, bytes: 0 }, 0)).toBe(': 1 file, 0.0 MiB in 0.0 s (0.0 MiB/s)');
    expect(summary(undefined, 1000)).toBe('');
  });
});

describe('a refusal before the recovery is not final', () => {
  it('a filter that refuses at first (a leftover the recovery clears) is asked again after the root is recovered', async () => {
    const { engine: e } = engine();
    const { calls } = fakePlugin(e.hooks);
    let refusals = 1;
    e.hooks.filter.tapPromise('leftover', async () => {
      if (refusals-- > 0) throw new Error('left over from an interrupted conversion');
      return undefined;
    });
    expect((await e.handle('d', { recoverRoot: true })).kind).toBe('converted');
    expect(calls.filter((c) => c === 'filter')).toHaveLength(2);
  });
});
