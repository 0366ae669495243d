/**
 * The job's API to plugins, with in-memory taps (no ZFS, no root): the contract's rule of which
 * phase records which job field (job.set), each plugin's namespace in the job record (job.data),
 * job.step's dry-run value, and the records of older versions (no namespace) still recovering.
 */
import { mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RootEngine } from '../../src/core/engine.js';
import { ContractError } from '../../src/core/errors.js';
import { jobPaths } from '../../src/core/places.js';
import { JobImpl, newRecord } from '../../src/core/job.js';
import { Journal, jobId } from '../../src/core/journal.js';
import { createLogger } from '../../src/core/logger.js';
import { JOB_FIELDS, phasesSetting, type JobRecord, type RootContext } from '../../src/core/index.js';
import { createHooks } from '../../src/core/hooks.js';
import { withRuns } from '../helpers/runs.js';

let tmp: string;
let rootdir: string;
let stateDir: string;

beforeEach(async () => {
  tmp = await realpath(await mkdtemp(join(tmpdir(), 'zdc-job-')));
  rootdir = join(tmp, 'root');
  stateDir = join(tmp, 'state');
  await mkdir(rootdir);
  await mkdir(stateDir, { mode: 0o700 });
  await mkdir(join(rootdir, 'd'));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const id = () => jobId(rootdir, 'd');
const recordFile = () => join(stateDir, 'jobs', `${id()}.json`);
const readRecord = async (): Promise<JobRecord> => JSON.parse(await readFile(recordFile(), 'utf8')) as JobRecord;

function engine(dryRun = false) {
  return new RootEngine({ rootfs: 'tank/root', rootdir, stateDir, dryRun, sinks: [] });
}

/** The minimal filesystem plugin ("fs"): records its fields where the contract says, commits in the swap. */
function filesystemPlugin(e: RootEngine) {
  e.hooks.provision.tapPromise('fs', async (job) => {
    await job.set({ filesystem: `tank/root/${job.name}`, staging: jobPaths(job.root.rootdir, job.name).staging });
  });
  e.hooks.swap.tapPromise('fs', async (job) => {
    await job.set({ aside: jobPaths(job.root.rootdir, job.name).aside });
    await job.commit();
  });
}

describe('job.set: each job field only in the phase the contract says sets it', () => {
  it('the contract names who sets each field', () => {
    expect([...JOB_FIELDS]).toEqual(['identity', 'filesystem', 'staging', 'aside', 'copied']);
    expect(phasesSetting('filesystem')).toEqual(['provision']);
    expect(phasesSetting('staging')).toEqual(['provision']);
    expect(phasesSetting('aside')).toEqual(['swap']);
    expect(phasesSetting('copied')).toEqual(['cleanup']);
    expect(phasesSetting('identity')).toEqual([]);
  });

  it('in the phases that set them, the fields are journalled', async () => {
    const e = engine();
    filesystemPlugin(e);
    let seen: JobRecord | undefined;
    e.hooks.publish.tapPromise('look', async () => {
      seen = await readRecord();
    });
    expect(await e.handle('d')).toMatchObject({ kind: 'converted', message: 'converted into tank/root/d' });
    expect(seen).toMatchObject({
      filesystem: 'tank/root/d',
      staging: jobPaths(rootdir, 'd').staging,
      aside: jobPaths(rootdir, 'd').aside,
      committed: true,
    });
  });

  for (const [phase, fields, setBy] of [
    ['migrate', { filesystem: 'tank/root/other' }, 'only the provision phase sets it'],
    ['swap', { staging: '/elsewhere' }, 'only the provision phase sets it'],
    ['provision', { aside: '/elsewhere' }, 'only the swap phase sets it'],
    ['provision', { identity: { dev: 1, ino: 2 } }, 'the engine records it'],
    ['swap', { copied: { files: 1, bytes: 2 } }, 'only the cleanup phase sets it'],
  ] as const) {
    it(`a tap that sets ${Object.keys(fields)[0]} in ${phase} fails with a ContractError naming the plugin, and the job is rolled back`, async () => {
      const e = engine();
      filesystemPlugin(e);
      const rollbacks: string[] = [];
      // Before the filesystem plugin's taps (in the swap: before its commit point).
      e.hooks[phase].tapPromise({ name: 'rogue', stage: -1 }, async (job) => {
        await job.set(fields);
      });
      e.hooks.rollback.tapPromise('fs', async (job, error) => {
        rollbacks.push(`${job.record.filesystem ?? 'none'}: ${error.name}`);
      });
      const outcome = await e.handle('d');
      const key = Object.keys(fields)[0]!;
      expect(outcome.kind).toBe('failed');
      expect(outcome.error).toBeInstanceOf(ContractError);
      expect(outcome.message).toBe(
        `${phase} failed: plugin "rogue": job.set() of the job field "${key}" in the ${phase} phase, which does not set it (${setBy}; src/core/contract.ts); rolled back, the original directory is untouched`,
      );
      // The rogue tap ran first: in the provision, before the filesystem was recorded.
      expect(rollbacks).toEqual([`${phase === 'provision' ? 'none' : 'tank/root/d'}: ContractError`]);
      expect(await e.journal.read(id())).toBeUndefined();
    });
  }

  it('a field that is not a job field is refused, pointing to job.data()', async () => {
    const e = engine();
    filesystemPlugin(e);
    e.hooks.provision.tapPromise('rogue', async (job) => {
      await job.set({ rounds: 3 } as never);
    });
    const outcome = await e.handle('d');
    expect(outcome.error).toBeInstanceOf(ContractError);
    expect(outcome.message).toMatch(
      /^provision failed: plugin "rogue": job\.set\(\) in the provision phase of "rounds", which is not a job field \(identity, filesystem, staging, aside, copied\); a plugin's own data goes in job\.data\(\); rolled back/,
    );
  });

  it('a rollback tap sets no field; an assessment found in recovery is recorded by the engine', async () => {
    const e = engine();
    e.hooks.provision.tapPromise('fs', async () => {
      throw new Error('no space');
    });
    e.hooks.rollback.tapPromise('rogue', async (job) => {
      await job.set({ aside: jobPaths(job.root.rootdir, job.name).aside });
    });
    const outcome = await e.handle('d');
    expect(outcome.message).toBe(
      'provision failed: no space; rollback failed: plugin "rogue": job.set() of the job field "aside" in a rollback, which does not set it (only the swap phase sets it; src/core/contract.ts); the next run for this root, or \'zfs-dynamic-creator recover\', tries again',
    );

    const again = engine();
    again.hooks.assess.tapPromise('fs', async () => ({ committed: false, nothingLeft: true, fields: { filesystem: 'tank/root/d' } }));
    const recovered = await again.recover((await again.journal.read(id()))!);
    expect(recovered).toMatchObject({ kind: 'rolled-back' });
  });
});

describe("job.data: each plugin's own namespace in the job record", () => {
  it('is journalled durably, read back in later phases, and kept apart from other plugins and the job fields', async () => {
    const e = engine();
    filesystemPlugin(e);
    const seen: unknown[] = [];
    e.hooks.migrate.tapPromise('copy', async (job) => {
      await job.data<{ rounds: number }>().set({ rounds: 1 });
      const journal = await readRecord();
      seen.push(journal.data);
    });
    e.hooks.swap.tapPromise({ name: 'copy', stage: 10 }, async (job) => {
      const mine = job.data<{ rounds: number }>();
      seen.push(mine.get(), job.data('fs').get(), job.data<{ rounds: number }>('copy').get());
      await mine.set({ rounds: (mine.get()?.rounds ?? 0) + 1 });
    });
    e.hooks.publish.tapPromise('other', async (job) => {
      // Another plugin reads it by name, and cannot write it.
      seen.push(job.data('copy').get());
      await expect(job.data('copy').set({ rounds: 99 })).rejects.toThrow(
        new ContractError('plugin "other": job.data("copy").set() writes another plugin\'s data; a plugin writes only its own'),
      );
      seen.push((await readRecord()).data);
    });
    expect(await e.handle('d')).toMatchObject({ kind: 'converted' });
    expect(seen).toEqual([{ copy: { rounds: 1 } }, { rounds: 1 }, undefined, { rounds: 1 }, { rounds: 2 }, { copy: { rounds: 2 } }]);
  });

  it('get() returns a copy, set() keeps what JSON keeps, clear() removes it', async () => {
    const e = engine();
    filesystemPlugin(e);
    const seen: unknown[] = [];
    e.hooks.migrate.tapPromise('copy', async (job) => {
      const mine = job.data<{ list: number[]; at?: Date | string; f?: () => void }>();
      await mine.set({ list: [1], at: new Date(0), f: () => undefined });
      mine.get()!.list.push(2);
      seen.push(mine.get());
      await expect(mine.set(undefined as never)).rejects.toThrow(ContractError);
      await mine.clear();
      seen.push(mine.get(), (await readRecord()).data);
    });
    expect(await e.handle('d')).toMatchObject({ kind: 'converted' });
    expect(seen).toEqual([{ list: [1], at: '1970-01-01T00:00:00.000Z' }, undefined, undefined]);
  });

  it('in filter and wait, which journal nothing, it is kept in memory: a skipped job leaves no journal', async () => {
    const e = engine();
    filesystemPlugin(e);
    e.hooks.filter.tapPromise('look', async (job) => {
      await job.data().set({ looked: true });
      return job.name === 'skip-me' ? { skip: 'asked to' } : undefined;
    });
    let journalled: unknown;
    e.hooks.provision.tapPromise('look', async () => {
      journalled = (await readRecord()).data;
    });
    await mkdir(join(rootdir, 'skip-me'));
    expect(await e.handle('skip-me')).toMatchObject({ kind: 'skipped' });
    expect(await e.journal.list()).toEqual([]);
    expect(await e.handle('d')).toMatchObject({ kind: 'converted' });
    expect(journalled).toEqual({ look: { looked: true } });
  });

  it('outside a tap it needs the plugin name', async () => {
    const log = createLogger([]);
    const root: RootContext = withRuns({ rootfs: 'tank/root', rootdir, log, dryRun: false, stateDir }, createHooks());
    const job = new JobImpl(root, newRecord(root, id(), 'd'), new Journal(stateDir), new AbortController().signal);
    job.phase = 'migrate';
    expect(() => job.data()).toThrow(new ContractError('job.data() outside a tap needs the name of the plugin whose data it is'));
    await job.data('copy').set({ n: 1 });
    expect((await readRecord()).data).toEqual({ copy: { n: 1 } });
  });

  it('recovery after a crash finds it in the journal', async () => {
    // A job that died after its commit point, its record holding the copy plugin's data.
    const e = engine();
    const record: JobRecord = {
      ...newRecord(e.context, id(), 'd'),
      phase: 'swap',
      status: 'running',
      committed: true,
      filesystem: 'tank/root/d',
      staging: jobPaths(rootdir, 'd').staging,
      aside: jobPaths(rootdir, 'd').aside,
      data: { copy: { rounds: 4 } },
    };
    await e.journal.write(record);
    const seen: unknown[] = [];
    e.hooks.swap.tapPromise('copy', async (job) => {
      seen.push(job.data('copy').get(), job.data().get());
    });
    expect(await e.recover(record, { fromJournal: true })).toMatchObject({ kind: 'recovered' });
    expect(seen).toEqual([{ rounds: 4 }, { rounds: 4 }]);
  });

  it('a record whose data is not an object is not trusted', async () => {
    const e = engine();
    await mkdir(join(stateDir, 'jobs'), { mode: 0o700 });
    await writeFile(recordFile(), JSON.stringify({ ...newRecord(e.context, id(), 'd'), data: ['copy'] }));
    const outcome = await e.recover((await e.journal.read(id()))!, { fromJournal: true });
    expect(outcome.kind).toBe('failed');
    expect(outcome.message).toMatch(
      /^journal record \w+ is not trusted \(its plugins' data is not an object\); nothing was read from it or changed/,
    );
  });
});

describe('a journal record written by the previous version (no namespace)', () => {
  // As the previous version wrote it, byte for byte in shape: the job fields at the top, no `data`.
  const oldRecord = (committed: boolean) => ({
    version: 1,
    id: id(),
    rootfs: 'tank/root',
    rootdir,
    name: 'd',
    phase: committed ? 'swap' : 'migrate',
    status: 'running',
    pid: 999999,
    startedAt: '2026-11-20T10:00:00.000Z',
    updatedAt: '2026-11-20T10:00:05.000Z',
    committed,
    identity: { dev: 2049, ino: 1234 },
    filesystem: 'tank/root/d',
    staging: jobPaths(rootdir, 'd').staging,
    ...(committed ? { aside: jobPaths(rootdir, 'd').aside } : {}),
    plugins: ['zfs', 'rsync'],
    steps: [
      { step: 'create', phase: 'provision', state: 'done', at: '2026-11-20T10:00:01.000Z' },
      { step: 'copy', phase: 'migrate', state: committed ? 'done' : 'started', at: '2026-11-20T10:00:02.000Z' },
      ...(committed ? [{ step: 'move-aside', phase: 'swap', state: 'done', at: '2026-11-20T10:00:03.000Z' }] : []),
    ],
  });

  for (const committed of [true, false]) {
    it(`${committed ? 'past' : 'before'} its commit point: recovered from its top-level fields`, async () => {
      await mkdir(join(stateDir, 'jobs'), { mode: 0o700 });
      await writeFile(recordFile(), `${JSON.stringify(oldRecord(committed), null, 1)}\n`, { mode: 0o600 });
      const e = engine();
      const seen: unknown[] = [];
      e.hooks.assess.tapPromise('fs', async (job) => {
        seen.push(
          `assess ${job.record.filesystem} ${job.record.staging} ${job.record.aside ?? '-'} ${JSON.stringify(job.record.identity)} data=${JSON.stringify(job.data('fs').get())}`,
        );
        return { committed };
      });
      e.hooks.swap.tapPromise('fs', async (job) => {
        seen.push(`swap ${job.record.aside} steps=${job.record.steps.map((s) => `${s.phase}/${s.step}:${s.state}`).join(',')}`);
      });
      e.hooks.rollback.tapPromise('fs', async (job) => {
        seen.push(`rollback ${job.record.filesystem} ${job.record.steps.at(-1)?.step}`);
      });
      const [result] = await e.recoverRoot();
      const { aside, staging } = jobPaths(rootdir, 'd');
      expect(result).toMatchObject({ name: 'd', outcome: { kind: committed ? 'recovered' : 'rolled-back' } });
      expect(seen).toEqual(
        committed
          ? [
              `assess tank/root/d ${staging} ${aside} {"dev":2049,"ino":1234} data=undefined`,
              `swap ${aside} steps=provision/create:done,migrate/copy:done,swap/move-aside:done`,
            ]
          : [`assess tank/root/d ${staging} - {"dev":2049,"ino":1234} data=undefined`, 'rollback tank/root/d copy'],
      );
      expect(await e.journal.list()).toEqual([]);
    });
  }
});

describe('job.step', () => {
  it('in a dry run, runs nothing and returns the dry-run value given, or undefined without one', async () => {
    const e = engine(true);
    filesystemPlugin(e);
    const seen: unknown[] = [];
    let ran = false;
    e.hooks.migrate.tapPromise('copy', async (job) => {
      const act = async () => {
        ran = true;
        return { copied: 5 };
      };
      const counted: { copied: number } = await job.step('catch-up', 'catch up', act, { dryRun: { copied: 0 } });
      seen.push(counted, await job.step('catch-up', 'catch up', act));
    });
    expect(await e.handle('d')).toMatchObject({
      kind: 'converted',
      message: 'dry run: would convert into tank/root/d; nothing was changed',
    });
    expect(ran).toBe(false);
    expect(seen).toEqual([{ copied: 0 }, undefined]);
  });

  it('otherwise returns what the action returns, whichever the form', async () => {
    const e = engine();
    filesystemPlugin(e);
    const seen: unknown[] = [];
    e.hooks.migrate.tapPromise('copy', async (job) => {
      seen.push(await job.step('a', 'a', async () => 1, { dryRun: 0 }), await job.step('b', 'b', async () => 2));
    });
    expect(await e.handle('d')).toMatchObject({ kind: 'converted' });
    expect(seen).toEqual([1, 2]);
  });
});
