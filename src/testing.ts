/**
 * A plugin author's test kit: runs a plugin's taps without ZFS, the engine or a config. The
 * hooks are the real ones (their contract checks what a tap returns), a job is a real job
 * (job.step journals, job.set keeps to the contract) with its journal in a temp directory, and
 * the root's logger keeps every record for the test to read.
 *
 *   import { testRoot } from 'zfs-dynamic-creator/testing';
 *   const root = await testRoot({ dirs: ['run-1'] });
 *   await root.use(myPlugin, { group: 'lab' });
 *   const job = await root.job('run-1');
 *   expect(await root.filter(job)).toBeUndefined();
 *   await root.phase(job, 'publish');
 *   expect(root.messages('my-plugin')).toContain('...');
 *   await root.dispose();
 *
 * A separate entry of the package (the plugin API does not load it). The engine's own checks
 * (locks, identity before a move, recovery's choices) are not run: docs/plugins.md.
 */
import { lstat, mkdir, mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONTRACT, HOOK_ORDER, type HookName, type JournalledPhase } from './core/contract.js';
import { isErrno } from './core/fsutil.js';
import { createHooks, type Hooks } from './core/hooks.js';
import { JobImpl, newRecord } from './core/job.js';
import { Journal, jobId } from './core/journal.js';
import { createLogger } from './core/logger.js';
import { runBook } from './core/runs.js';
import type {
  Assessment,
  Defer,
  Job,
  JobFields,
  JobRecord,
  LogRecord,
  OutcomeKind,
  PluginDefinition,
  RootContext,
  Skip,
  Survey,
} from './core/types.js';

export interface TestRootOptions {
  /** The root's filesystem (for ZFS: the parent dataset); nothing checks it exists. Default tank/test. */
  readonly rootfs?: string;
  /** Directories to make in the root (direct children), for jobs of those names. */
  readonly dirs?: readonly string[];
  /** A dry run: job.step only describes, the hooks that do not run in a dry run are not called. */
  readonly dryRun?: boolean;
}

export interface TestJobOptions {
  /** Job fields the record starts with (as a job recovering from an earlier run would have them). */
  readonly fields?: JobFields;
  /** The record says the job passed its commit point. */
  readonly committed?: boolean;
  /** Aborted to ask the job to stop (as SIGTERM does). */
  readonly signal?: AbortSignal;
}

/** A root in a temp directory, its hooks, and what was logged. */
export class TestRoot {
  readonly hooks: Hooks = createHooks();
  /** Every log record, in order: the root's, the plugins' and the jobs'. */
  readonly logs: LogRecord[] = [];
  readonly context: RootContext;
  private readonly journal: Journal;

  constructor(
    /** The temp directory holding the root and the state directory (removed by dispose()). */
    readonly dir: string,
    rootfs: string,
    dryRun: boolean,
  ) {
    const rootdir = join(dir, 'root');
    const stateDir = join(dir, 'state');
    // As the engine's: records reach the `log` hook's taps (syslog's, say) too.
    const log = createLogger([(record) => this.logs.push(record), (record) => this.hooks.log.call(record)], { rootdir });
    const base = { rootfs, rootdir, stateDir, dryRun, log };
    this.context = { ...base, runs: runBook(base, this.hooks) };
    this.journal = new Journal(stateDir);
  }

  get rootdir(): string {
    return this.context.rootdir;
  }

  get stateDir(): string {
    return this.context.stateDir;
  }

  /** The messages logged, in order; with a name, only those of that plugin. */
  messages(plugin?: string): string[] {
    return this.logs.filter((r) => plugin === undefined || r.plugin === plugin).map((r) => r.message);
  }

  /**
   * Applies a plugin as the loader does: its options checked by its schema (as from a config
   * entry, `{}` when none is given), its context's log named after it. Says which hooks it tapped.
   */
  async use<O>(plugin: PluginDefinition<O>, options: unknown = {}): Promise<HookName[]> {
    const parsed = plugin.options ? plugin.options.parse(options) : (options as O);
    const before = new Map(HOOK_ORDER.map((h) => [h, this.hooks[h].taps.length]));
    const { rootfs, rootdir, dryRun, stateDir, log } = this.context;
    await plugin.apply(this.hooks, {
      options: parsed,
      root: { rootfs, rootdir },
      log: log.child({ plugin: plugin.name }),
      dryRun,
      stateDir,
    });
    return HOOK_ORDER.filter((h) => this.hooks[h].taps.length > (before.get(h) ?? 0));
  }

  /** Makes a directory in the root (a direct child), as a user would. */
  async mkdir(name: string): Promise<string> {
    const path = join(this.rootdir, name);
    await mkdir(path);
    return path;
  }

  /** A job for the directory `name` (its identity recorded when it exists), before its filter. */
  async job(name: string, options: TestJobOptions = {}): Promise<Job> {
    const record: JobRecord = {
      ...newRecord(this.context, jobId(this.rootdir, name), name),
      ...options.fields,
      committed: options.committed ?? false,
    };
    const stats = await lstat(join(this.rootdir, name)).catch((error: unknown) =>
      isErrno(error, 'ENOENT') ? undefined : Promise.reject(error),
    );
    if (stats) record.identity = { dev: stats.dev, ino: stats.ino };
    return new JobImpl(this.context, record, this.journal, options.signal ?? new AbortController().signal, this.hooks);
  }

  /** The filter phase: a skip, or undefined when the plugins take the directory. */
  filter(job: Job): Promise<Skip | undefined> {
    impl(job).phase = 'filter';
    return this.hooks.filter.promise(job);
  }

  /** The wait phase: a defer, or undefined (not called in a dry run, as by the engine). */
  async wait(job: Job): Promise<Defer | undefined> {
    impl(job).phase = 'wait';
    return this.runs('wait') ? this.hooks.wait.promise(job) : undefined;
  }

  /** A journalled phase: entered (the journal written), then its taps, as the engine runs it. */
  async phase(job: Job, phase: JournalledPhase): Promise<void> {
    await impl(job).enter(phase);
    if (this.runs(phase)) await this.hooks[phase].promise(job);
  }

  /** The outcome hook, with an outcome of this kind. */
  async outcome(job: Job, kind: OutcomeKind, message: string = kind): Promise<void> {
    await this.hooks.outcome.promise(job, { kind, message, durationMs: 0 });
  }

  /** Recovery's question: what the job left on disk. */
  async assess(job: Job): Promise<Assessment | undefined> {
    impl(job).phase = 'recover';
    return this.hooks.assess.promise(job);
  }

  /** The failure path before the commit point (not called in a dry run). */
  async rollback(job: Job, error: Error): Promise<void> {
    await impl(job).enter('recover');
    if (this.runs('rollback')) await this.hooks.rollback.promise(job, error);
  }

  /** The prepare hook (the plugins' checks only: the engine's own are not run). */
  async prepare(): Promise<void> {
    await this.hooks.prepare.promise(this.context);
  }

  /** The survey hook, from what is given (by default: nothing found). */
  survey(base: Partial<Survey> = {}): Promise<Survey> {
    const survey: Survey = { directories: new Set(), filesystems: new Map(), leftovers: new Set(), ignored: new Set(), ...base };
    return this.hooks.survey.promise(survey, this.context);
  }

  async sync(survey: Survey): Promise<void> {
    await this.hooks.sync.promise(this.context, survey);
  }

  /** The close hook: what a plugin opened is closed. */
  async close(): Promise<void> {
    await this.hooks.close.promise();
  }

  /** The job's record as the journal holds it on disk, or undefined (nothing journalled, or forgotten). */
  async journalled(job: Job): Promise<JobRecord | undefined> {
    const text = await readFile(this.journal.file(job.id), 'utf8').catch((error: unknown) =>
      isErrno(error, 'ENOENT') ? undefined : Promise.reject(error),
    );
    return text === undefined ? undefined : (JSON.parse(text) as JobRecord);
  }

  /** Removes the temp directory (the root, the journal and whatever the plugins left there). */
  async dispose(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  private runs(hook: HookName): boolean {
    return !this.context.dryRun || CONTRACT[hook].dryRun;
  }
}

/** A root in a fresh temp directory: `<dir>/root` (with `dirs` made in it) and `<dir>/state` (mode 0700). */
export async function testRoot(options: TestRootOptions = {}): Promise<TestRoot> {
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'zdc-plugin-test-')));
  const root = new TestRoot(dir, options.rootfs ?? 'tank/test', options.dryRun ?? false);
  await mkdir(root.rootdir);
  await mkdir(root.stateDir, { mode: 0o700 });
  for (const name of options.dirs ?? []) await root.mkdir(name);
  return root;
}

function impl(job: Job): JobImpl {
  if (!(job instanceof JobImpl)) throw new TypeError('a job of the test kit (TestRoot.job()) was expected');
  return job;
}
