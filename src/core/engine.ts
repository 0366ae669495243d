/**
 * Runs jobs through the lifecycle for one root: filter, wait, provision,
 * migrate, swap, publish, cleanup; on failure, rollback before the commit and
 * recovery after it. Knows no plugin by name.
 *
 * The commit point is recorded (journal, then the filesystem's own record through the swap's
 * taps) BEFORE the new filesystem is made visible at the original path. Recovery decides from
 * those records alone: a job that passed its commit is only ever finished, never rolled back,
 * whatever is mounted where when recovery runs.
 */
import { lstat, readdir } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { createHooks, type Hooks } from './hooks.js';
import { AFTER_COMMIT, CONTRACT, JOURNALLED_PHASES, type HookName } from './contract.js';
import {
  AdvisedError,
  BusyError,
  DamagedStateError,
  RefusedError,
  RootGoneError,
  isPermanentRefusal,
  oneLine,
  quoteName,
} from './errors.js';
import { RefusalMemory, configHash } from './refusals.js';
import { runBook, type RunFact } from './runs.js';
import { isErrno } from './fsutil.js';
import { JobImpl, newRecord } from './job.js';
import { Journal, jobId } from './journal.js';
import { acquireLock, type Lock } from './lock.js';
import { SlotHold, UNKNOWN_OWNER, type Slots } from './slots.js';
import { layoutProblem, walkLevels } from './levels.js';
import type {
  Layout,
  Identity,
  JobRecord,
  StepRecord,
  Logger,
  Outcome,
  OutcomeKind,
  PhaseName,
  PluginSpec,
  RootContext,
  Survey,
} from './types.js';
import type { LoadedPlugin } from './loader.js';
import { createLogger, humanTime, type LogSink } from './logger.js';
import type { JobObserver } from './progress.js';
import { ensureHoldingDir, isHelperName, jobPaths, rootLevelHelperPath } from './places.js';
import { assertSameDirectory, directoryIdentity } from './identity.js';
import { originalPlace } from './original.js';
import { isZfsControlDir } from '../util/safefs/index.js';
import { assertRootPresent, claimRoot, clearGone, goneLine, goneNoted, noteGone } from './roots.js';

export interface EngineOptions {
  readonly rootfs: string;
  readonly rootdir: string;
  readonly stateDir: string;
  readonly dryRun: boolean;
  /** Where log records go besides hooks.log (stderr, usually). */
  readonly sinks: readonly LogSink[];
  /** The root's plugins as configured: recorded in each job's journal for config-less recovery. */
  readonly plugins?: readonly PluginSpec[];
  /** Where relative plugin paths resolve from. */
  readonly baseDir?: string;
  /** Told of each job's progress and end (a live line on a terminal, metrics); see progress.ts. */
  readonly observers?: readonly JobObserver[];
  /** Where the root's runs are (src/core/levels.ts); absent: its direct children. */
  readonly layout?: Layout;
}

export interface HandleOptions {
  readonly signal?: AbortSignal;
  /** How long to wait for another process's lock on the same directory (default: not at all). */
  readonly lockWaitMs?: number;
  /**
   * First finish or undo every interrupted job of this root (what a single `handle`, an incron
   * run or a legacy run does, so that a job killed in one run is finished by the next).
   */
  readonly recoverRoot?: boolean;
  /**
   * The process's work slots: the phases that work (provision on) run holding one; filter, wait
   * and whatever a plugin runs in job.waiting() hold none. Without it, nothing is limited.
   */
  readonly slots?: Slots;
  /**
   * Return once the new filesystem is live and published, leaving the phases the contract marks
   * deferrable (the cleanup: grace period, verification, removal of the original) to a later
   * run for this root (a sweep, the daemon, recover). Waiting is not work: the caller need not wait.
   */
  readonly deferCleanup?: boolean;
  /** Try a directory again even when a refusal of it is remembered and still stands (`handle`). */
  readonly retryRefused?: boolean;
}

/** A job in flight in this process, as status shows it. */
export interface ActiveJob {
  readonly name: string;
  readonly phase: string;
  /** Holding a work slot now. */
  readonly working: boolean;
  /** What it waits for without a slot (quiet period, grace period, a slot), if anything. */
  readonly waiting?: string;
  /** When its wait began, or else its phase: not the job's start. */
  readonly since: string;
  /** When the job began. */
  readonly jobSince: string;
  /** The step running now ("migrate/copy") and since when. */
  readonly step?: string;
  readonly stepSince?: string;
  /** The copy's progress as the terminal line shows it: rate over the step alone, ETA from it. */
  readonly progress?: {
    files?: number;
    bytes?: number;
    totalFiles?: number;
    totalBytes?: number;
    bytesPerSecond?: number;
    etaSeconds?: number;
  };
}

function progressOf(live: JobImpl['live'], now: number): ActiveJob['progress'] {
  if (live.files === undefined && live.bytes === undefined) return undefined;
  const seconds = (now - live.stepSince) / 1000;
  const rate = live.bytes !== undefined && seconds > 0 ? live.bytes / seconds : undefined;
  const left = live.totalBytes !== undefined && live.bytes !== undefined ? Math.max(0, live.totalBytes - live.bytes) : undefined;
  const eta = rate !== undefined && rate > 0 && left !== undefined ? Math.round(left / rate) : undefined;
  const defined = Object.entries({
    files: live.files,
    bytes: live.bytes,
    totalFiles: live.totalFiles,
    totalBytes: live.totalBytes,
    bytesPerSecond: rate && Math.round(rate),
    etaSeconds: eta,
  }).filter(([, v]) => v !== undefined);
  return Object.fromEntries(defined) as ActiveJob['progress'];
}

export interface RecoveryResult {
  readonly rootdir: string;
  readonly name: string;
  readonly outcome: Outcome;
}

/** The log level of an outcome: failures are errors, deferrals warnings, results notices. */
function levelOf(kind: OutcomeKind): 'debug' | 'info' | 'notice' | 'warn' | 'error' {
  return kind === 'failed'
    ? 'error'
    : kind === 'deferred' || kind === 'refused'
      ? 'warn'
      : kind === 'converted' || kind === 'recovered'
        ? 'notice'
        : 'info';
}

/** The job lost its lock: it must not write anything more, the journal included. */
export class LockLostError extends Error {
  override readonly name = 'LockLostError';
}

/** One handle() run: its job, and what it holds until it ends. */
interface HandleRun {
  readonly job: JobImpl;
  readonly name: string;
  readonly id: string;
  readonly started: number;
  readonly signal: AbortSignal;
  readonly options: HandleOptions;
  lock?: Lock;
  recovering?: Promise<void>;
  /** What the wait tap said about looking again (for the outcome). */
  recheckSeconds?: number;
}

export class RootEngine {
  readonly hooks: Hooks = createHooks();
  readonly context: RootContext;
  readonly journal: Journal;
  /** Refusals remembered for this root's directories (see refusals.ts). */
  readonly refusals: RefusalMemory;
  plugins: LoadedPlugin[] = [];
  private prepared: Promise<void> | undefined;
  /** Jobs running in this process now (handle and recovery), by name. */
  private readonly running = new Map<string, { job: JobImpl; since: string }>();
  /** Names seen in a survey that are not UTF-8 (warned about once). */
  private readonly unreadableNames = new Set<string>();

  constructor(private readonly options: EngineOptions) {
    const log = createLogger([...options.sinks, (record) => this.hooks.log.call(record)], { rootdir: options.rootdir });
    const base = {
      rootfs: options.rootfs,
      rootdir: options.rootdir,
      ...(options.layout ? { layout: options.layout } : {}),
      log,
      dryRun: options.dryRun,
      stateDir: options.stateDir,
    };
    this.context = { ...base, runs: runBook(base, this.hooks) };
    this.journal = new Journal(options.stateDir);
    this.refusals = new RefusalMemory(options.stateDir, options.rootdir, configHash(options.rootfs, options.plugins, options.layout));
  }

  get log(): Logger {
    return this.context.log;
  }

  /** Runs the prepare hook (environment checks) once it has passed; a failure is tried again next time. */
  prepare(): Promise<void> {
    this.prepared ??= (async () => {
      const { rootdir, stateDir, dryRun } = this.context;
      await assertRootPresent(rootdir);
      // A holding directory already there is checked before any plugin reads it; one is made
      // only once the plugins found the root in place (never in the bare mountpoint of a
      // filesystem that is not mounted: it would keep the filesystem from mounting there).
      await ensureHoldingDir(rootdir, false);
      await this.hooks.prepare.promise(this.context);
      await ensureHoldingDir(rootdir, !dryRun);
      await claimRoot(rootdir, stateDir, dryRun);
      if (!dryRun) await clearGone(stateDir, rootdir);
    })().catch((error: unknown) => {
      this.prepared = undefined;
      throw error;
    });
    return this.prepared;
  }

  /**
   * This root found gone (`error`, from prepare): the one line that reports it, and whether this
   * run is the first to meet it (noted in the stateDir; a dry run only reads the note).
   */
  async goneReport(error: RootGoneError): Promise<{ line: string; newly: boolean }> {
    const { rootdir, rootfs, stateDir, dryRun } = this.context;
    const jobs = (await this.journal.list(rootdir)).length;
    const line = goneLine(rootdir, error.message, jobs);
    const newly = dryRun ? !(await goneNoted(stateDir, rootdir)) : await noteGone(stateDir, { rootdir, rootfs, reason: error.message });
    return { line, newly };
  }

  /** The jobs this process is running for this root now: what they do or wait for. */
  active(): ActiveJob[] {
    const now = Date.now();
    return [...this.running.values()].map(({ job, since }) => {
      const live = job.live;
      const progress = progressOf(live, now);
      return {
        name: job.name,
        phase: job.phase,
        working: job.slot.held,
        ...(job.waitingFor !== undefined ? { waiting: job.waitingFor } : {}),
        since: new Date(live.waiting?.since ?? live.phaseSince).toISOString(),
        jobSince: since,
        ...(live.step !== undefined ? { step: live.step, stepSince: new Date(live.stepSince).toISOString() } : {}),
        ...(progress !== undefined ? { progress } : {}),
      };
    });
  }

  /** Converts one directory, a direct child of rootdir. Never throws: the outcome says what happened. */
  async handle(name: string, options: HandleOptions = {}): Promise<Outcome> {
    const started = Date.now();
    const id = jobId(this.context.rootdir, name);
    const signal = options.signal ?? new AbortController().signal;
    const job = new JobImpl(this.context, newRecord(this.context, id, name, this.options), this.journal, signal, this.hooks);
    job.slot = new SlotHold(options.slots);
    job.observers = this.options.observers ?? [];
    this.running.set(name, { job, since: new Date(started).toISOString() });
    const run: HandleRun = { job, name, id, started, signal, options };
    try {
      return await this.convert(run);
    } catch (error) {
      return await this.outcomeOfError(run, error);
    } finally {
      job.slot.give();
      this.running.delete(name);
      await run.lock?.release();
      await run.recovering;
    }
  }

  /** handle()'s job from the filters to its end; throws what ends it early (outcomeOfError). */
  private async convert(run: HandleRun): Promise<Outcome> {
    const { job, name, id, options, signal } = run;
    const { rootdir, stateDir, dryRun } = this.context;
    checkName(name, this.context.layout);
    const early = await this.beforeLock(run);
    if ('outcome' in early) return early.outcome;
    let decided = early.decided;
    await this.prepare();
    // The root's other interrupted jobs are finished beside this one, not before it: a held
    // original waits out its grace period without keeping this directory from its turn.
    if (options.recoverRoot && !dryRun) run.recovering = this.recoverBeside(name, signal, options);
    if (!dryRun) {
      run.lock = await acquireLock(stateDir, id, { waitMs: options.lockWaitMs ?? 0 });
      job.guard = lockGuard(run.lock);
    }
    // An interrupted job for this name is finished (or undone) first.
    const leftover = await this.journal.read(id, { setAside: !dryRun });
    if (leftover) {
      decided = undefined;
      const recovered = await this.recoverLocked(leftover, signal, run.lock, options.slots);
      if (recovered.kind === 'failed' || leftover.committed)
        return await this.finish(run, recovered.kind, recovered.message, recovered.error);
    }
    const identity = await directoryIdentity(job.path);
    job.setInMemory({ identity });
    job.slot.owner = await ownerOf(rootdir, name);
    if (decided === undefined || decided.dev !== identity.dev || decided.ino !== identity.ino) {
      job.phase = 'filter';
      const skip = await this.hooks.filter.promise(job);
      if (skip) return await this.finish(run, 'skipped', `skipped: ${skip.skip}`);
    }
    const deferred = await this.waitTurn(run);
    if (deferred) return deferred;
    // What we convert must still be the directory we looked at.
    await assertSameDirectory(job.path, identity);
    return await this.runPhases(run);
  }

  /**
   * The filters decide first (the incron path: every directory made in the root starts a run, and
   * a name they leave alone is answered without environment checks, recovery or lock) — unless the
   * journal has a job for the name, which must be recovered first. A remembered refusal answers at
   * once. `decided`: the identity the filters passed, which stands under the lock only if the
   * directory is still that one (undefined: they decide again).
   */
  private async beforeLock(run: HandleRun): Promise<{ outcome: Outcome } | { decided: Identity | undefined }> {
    const { job, name, id, options, started } = run;
    // A damaged record counts as a job: it is dealt with under the lock.
    const record = await this.journal.read(id).catch((e: unknown) => (e instanceof DamagedStateError ? null : Promise.reject(e)));
    // A remembered refusal answers at once, unless an interrupted job of the name waits.
    const standing = record === undefined && !options.retryRefused ? await this.refusals.standing(name) : undefined;
    if (standing) {
      const message = `refused (remembered since ${humanTime(standing.since)}): ${standing.reason}; tried again when the directory or the config changes, or by 'zfs-dynamic-creator handle'`;
      job.log.debug(message, { step: 'outcome' });
      return { outcome: { kind: 'refused', message, durationMs: Date.now() - started, remembered: true } };
    }
    if (record !== undefined) return { decided: undefined };
    let decided: Identity | undefined = await directoryIdentity(job.path);
    job.setInMemory({ identity: decided });
    job.phase = 'filter';
    // Only a skip is final here: a refusal (a leftover dataset, say) is decided again after
    // the root's recovery, as it always was.
    const skip = await this.hooks.filter.promise(job).catch(() => {
      decided = undefined;
      return undefined;
    });
    if (skip) return { outcome: await this.finish(run, 'skipped', `skipped: ${skip.skip}`) };
    return { decided };
  }

  /** The wait hook, then the job's turn for a work slot (holding none while it waited); an outcome when deferred. */
  private async waitTurn(run: HandleRun): Promise<Outcome | undefined> {
    const { job, signal } = run;
    job.phase = 'wait';
    const ino = job.record.identity?.ino;
    await this.recordRun(job, { kind: 'detected', ...(ino !== undefined ? { ino } : {}) });
    if (this.runs('wait', job.log)) {
      const defer = await this.hooks.wait.promise(job);
      if (defer) {
        if (defer.recheckSeconds !== undefined) run.recheckSeconds = defer.recheckSeconds;
        return defer.waiting
          ? await this.finish(run, 'waiting', `waiting: ${defer.defer}`, undefined, 'debug')
          : await this.finish(run, 'deferred', `deferred: ${defer.defer}`);
      }
    }
    try {
      job.waitingFor = 'a work slot';
      await job.slot.take(signal);
    } catch {
      return await this.finish(run, 'deferred', 'deferred: stopped before its turn to work; the directory is as it was');
    } finally {
      job.waitingFor = undefined;
    }
    return undefined;
  }

  /** The journalled phases, in order; a failure rolls back (or, past the commit, is left for recovery). */
  private async runPhases(run: HandleRun): Promise<Outcome> {
    const { job, signal, options, started } = run;
    await this.recordRun(job, { kind: 'converting' });
    for (const phase of JOURNALLED_PHASES) {
      if (options.deferCleanup && CONTRACT[phase].phase?.deferrable && job.record.committed && !this.context.dryRun) {
        await job.markStatus('cleanup-pending');
        const kept = job.record.aside ? `, and removes the original kept at ${quoteName(job.record.aside)}` : '';
        return await this.finish(
          run,
          'converted',
          `converted into ${job.record.filesystem ?? 'a new filesystem'}, live and published; the ${phase} is left to the next run for this root (reconcile, the daemon's sweep, or 'zfs-dynamic-creator recover'), which waits out the grace period, verifies${kept}`,
        );
      }
      try {
        await job.enter(phase);
        if (this.runs(phase, job.log)) await this.hooks[phase].promise(job);
      } catch (error) {
        // Asked to stop (SIGTERM): a clean stop, not an error, when everything was put back
        // (or, past the commit, left for the next run as designed). Deferred: tried again later.
        const stopping = signal.aborted && !(error instanceof LockLostError);
        const failure = await this.rollBackOrKeep(job, phase, error, stopping);
        if (stopping && failure.settled) return await this.finish(run, 'deferred', failure.message, undefined, 'notice');
        return await this.finish(run, 'failed', failure.message, asError(error), undefined, failure.settled);
      }
    }
    await job.forget();
    return await this.finish(
      run,
      'converted',
      this.context.dryRun
        ? `dry run: would convert${job.record.filesystem !== undefined ? ` into ${job.record.filesystem}` : ''}; nothing was changed`
        : `converted into ${job.record.filesystem ?? 'a new filesystem'}${summary(job.record.copied, Date.now() - started, copyMs(job.record.steps))}`,
    );
  }

  /** What ends a handle() run early, as its outcome. */
  private async outcomeOfError(run: HandleRun, error: unknown): Promise<Outcome> {
    const { job } = run;
    if (error instanceof BusyError) return await this.finish(run, 'busy', `left alone: ${error.message}`);
    // The root went away under the job (its pool exported, say): tried again once it is back.
    if (error instanceof RootGoneError) return await this.finish(run, 'deferred', `deferred: ${oneLine(error)}`, error, 'warn');
    if (error instanceof LockLostError) return await this.finish(run, 'failed', error.message, error);
    // Refused before anything changed: nothing to undo.
    if (job.hasJournal && !job.record.committed) await job.forget().catch(() => undefined);
    return await this.finish(run, 'failed', oneLine(error), asError(error));
  }

  /**
   * Ends a handle() run: its outcome remembered (a refusal), logged, told to the outcome hook and
   * the observers. A failure only a change to the directory or the config can lift, after which
   * everything was put back (`settled`), is a refusal: remembered, said once. A rollback that
   * failed stays a failure.
   */
  private async finish(
    run: HandleRun,
    given: OutcomeKind,
    message: string,
    error?: Error,
    chosen?: 'debug' | 'info' | 'notice' | 'warn' | 'error',
    settled = true,
  ): Promise<Outcome> {
    const { job, name, started } = run;
    const kind: OutcomeKind = given === 'failed' && settled && isPermanentRefusal(error) ? 'refused' : given;
    const level = kind === given ? (chosen ?? levelOf(kind)) : levelOf(kind);
    const outcome: Outcome = {
      kind,
      message,
      durationMs: Date.now() - started,
      ...(error ? { error } : {}),
      ...(run.recheckSeconds !== undefined ? { recheckSeconds: run.recheckSeconds } : {}),
    };
    // A root that is gone says nothing about the directory: what is remembered of it stays.
    const remember = !this.context.dryRun && kind !== 'busy' && !(error instanceof RootGoneError);
    if (remember)
      await this.rememberOutcome(name, outcome).catch((e: unknown) => job.log.warn(`the refusal could not be recorded: ${oneLine(e)}`));
    job.log[level](message, { step: 'outcome' });
    await this.hooks.outcome.promise(job, outcome).catch((e: unknown) => job.log.warn(`an outcome hook failed: ${oneLine(e)}`));
    await this.ended(job, outcome);
    return outcome;
  }

  /** handle()'s recovery of the root's other interrupted jobs, run beside its own job; never rejects. */
  private async recoverBeside(name: string, signal: AbortSignal, options: HandleOptions): Promise<void> {
    try {
      await this.recoverRoot(signal, undefined, options.slots, { leavePendingCleanups: options.deferCleanup ?? false, except: name });
    } catch (error) {
      this.log.error(`finishing the root's interrupted jobs failed: ${oneLine(error)}; the next run tries again`, { step: 'recover' });
    }
  }

  /**
   * The failure path of a phase: roll back before the commit, keep everything for recovery after
   * it. `settled` is true when that went as designed (rolled back, or left for recovery past the
   * commit), false when the rollback itself failed or the lock was lost. `stopping`: the job was
   * asked to stop (SIGTERM), and the message says so instead of calling it a failure.
   */
  private async rollBackOrKeep(
    job: JobImpl,
    phase: PhaseName | 'recover',
    error: unknown,
    stopping = false,
  ): Promise<{ message: string; settled: boolean }> {
    // A stop is said as a stop: not with the runtime's words for the abort.
    const abort = error instanceof Error && error.name === 'AbortError';
    const reason = stopping ? `stopped during ${phase}${abort ? '' : `: ${oneLine(error)}`}` : `${phase} failed: ${oneLine(error)}`;
    // A dry run changed nothing: there is nothing to undo, and rollback does not run in one.
    if (job.dryRun && !CONTRACT.rollback.dryRun) return { message: reason, settled: true };
    if (error instanceof LockLostError) return { message: lockLostReport(job, error), settled: false };
    if (job.record.committed) return { message: await this.keptForRecovery(job, phase, error, reason, stopping), settled: true };
    await job.markStatus('rolling-back', reason);
    try {
      await job.enter('recover');
      await this.hooks.rollback.promise(job, asError(error));
    } catch (rollbackError) {
      if (rollbackError instanceof LockLostError) return { message: lockLostReport(job, rollbackError), settled: false };
      await job.markStatus('incomplete', `${reason}; rollback failed: ${oneLine(rollbackError)}`).catch(() => undefined);
      return {
        message: `${reason}; rollback failed: ${oneLine(rollbackError)}; the next run for this root, or 'zfs-dynamic-creator recover', tries again`,
        settled: false,
      };
    }
    await job.forget();
    return {
      message: `${reason}; rolled back, the original directory is untouched${stopping ? '; it will be tried again' : ''}`,
      settled: true,
    };
  }

  /** A failure past the commit point: nothing is undone, the job is left to recovery; what to say. */
  private async keptForRecovery(
    job: JobImpl,
    phase: PhaseName | 'recover',
    error: unknown,
    reason: string,
    stopping: boolean,
  ): Promise<string> {
    // Stopped during its cleanup: live and published, the cleanup left to the next run.
    await job.markStatus(stopping && phase === 'cleanup' ? 'cleanup-pending' : 'incomplete', reason);
    // An error that says where everything is and what to run (its kind says so) is not repeated.
    if (error instanceof AdvisedError) return `${reason} (the job is past its commit point: nothing is undone)`;
    // Where the original is now, not where the swap put it: the cleanup may have removed it.
    const place = job.record.aside ? await originalPlace(job).catch(() => undefined) : undefined;
    const kept = place?.at === 'aside' ? `; the original is kept at ${quoteName(place.path)}` : '';
    return `${reason}; the job is past its commit point, so nothing is undone${kept}; the next run for this root, or 'zfs-dynamic-creator recover', finishes it`;
  }

  /** Finishes or undoes one interrupted job, taking its lock. */
  async recover(record: JobRecord, options: HandleOptions & { fromJournal?: boolean } = {}): Promise<Outcome> {
    let lock: Lock | undefined;
    const started = Date.now();
    try {
      await this.prepare();
      lock = await acquireLock(this.context.stateDir, record.id, { waitMs: options.lockWaitMs ?? 0 });
      // Under the lock, the journal says what is left: a record that was in the journal and is
      // gone now was finished by another process meanwhile, and there is nothing to do.
      const fresh = await this.journal.read(record.id, { setAside: !this.context.dryRun });
      if (fresh === undefined && options.fromJournal) {
        return { kind: 'skipped', message: 'finished meanwhile by another process; nothing to do', durationMs: Date.now() - started };
      }
      return await this.recoverLocked(fresh ?? record, options.signal ?? new AbortController().signal, lock, options.slots);
    } catch (error) {
      const kind: OutcomeKind = error instanceof BusyError ? 'busy' : 'failed';
      return { kind, message: oneLine(error), durationMs: Date.now() - started, error: asError(error) };
    } finally {
      await lock?.release();
    }
  }

  /**
   * Every interrupted job of this root: the journal's, and leftovers found on disk without one.
   * A job whose lock is held (running in this or another process) comes back 'busy' and is left alone.
   */
  async recoverRoot(
    signal?: AbortSignal,
    survey?: Survey,
    slots?: Slots,
    options: { leavePendingCleanups?: boolean; except?: string } = {},
  ): Promise<RecoveryResult[]> {
    const results: RecoveryResult[] = [];
    for (const { name, fromJournal } of await this.interrupted(survey, options)) {
      if (signal?.aborted) break;
      const outcome = await this.recoverName(name, { ...(signal ? { signal } : {}), ...(slots ? { slots } : {}), fromJournal });
      results.push({ rootdir: this.context.rootdir, name, outcome });
    }
    return results;
  }

  /**
   * The names of this root's interrupted jobs: the journal's, then leftovers found on disk without
   * one. `leavePendingCleanups`: not the cleanups a run left to later (a run that itself leaves
   * its cleanup to later does not wait out others' grace periods); `except`: not this name.
   */
  async interrupted(
    survey?: Survey,
    options: { leavePendingCleanups?: boolean; except?: string } = {},
  ): Promise<{ name: string; fromJournal: boolean }[]> {
    if (!this.context.dryRun) await this.journal.removeOrphanedTemps();
    const all = await this.journal.list(this.context.rootdir);
    const known = new Set(all.map((r) => r.name));
    const records = all
      .filter((r) => !(options.leavePendingCleanups && r.status === 'cleanup-pending'))
      .map((r) => ({ name: r.name, fromJournal: true }));
    const { leftovers } = survey ?? (await this.survey());
    const orphans = [...leftovers].filter((name) => !known.has(name)).map((name) => ({ name, fromJournal: false }));
    return [...records, ...orphans].filter((r) => r.name !== options.except);
  }

  /**
   * Finishes or undoes the interrupted job of `name`: its journal record, or a leftover found on
   * disk without one. `fromJournal`: it was listed from the journal (gone now: finished meanwhile).
   */
  async recoverName(name: string, options: HandleOptions & { fromJournal?: boolean } = {}): Promise<Outcome> {
    const record = await this.journal.read(jobId(this.context.rootdir, name));
    return this.recover(record ?? this.orphanRecord(name), {
      ...options,
      lockWaitMs: options.lockWaitMs ?? 0,
      fromJournal: options.fromJournal ?? record !== undefined,
    });
  }

  /** A record for an interrupted job found on disk but not in the journal. */
  orphanRecord(name: string): JobRecord {
    const record = newRecord(this.context, jobId(this.context.rootdir, name), name, this.options);
    record.status = 'incomplete';
    return record;
  }

  /**
   * Why a journal record cannot be trusted for this root, or undefined when it can: every name
   * and path in it must be what the tool derives itself from the root and the directory's name.
   */
  private untrusted(record: JobRecord): string | undefined {
    if (record.rootdir !== this.context.rootdir)
      return `its rootdir ${quoteName(String(record.rootdir))} is not ${quoteName(this.context.rootdir)}`;
    if (record.rootfs !== this.context.rootfs)
      return `its rootfs ${quoteName(String(record.rootfs))} is not ${quoteName(this.context.rootfs)}`;
    try {
      checkName(record.name, this.context.layout);
    } catch {
      return `its name ${quoteName(String(record.name))} is not a directory name`;
    }
    if (record.id !== jobId(record.rootdir, record.name)) return 'its id does not belong to its root and name';
    const derived = jobPaths(this.context.rootdir, record.name);
    for (const [key, kind] of [
      ['staging', 'staging'],
      ['aside', 'orig'],
    ] as const) {
      const value = record[key];
      if (value !== undefined && value !== derived[key] && value !== rootLevelHelperPath(this.context.rootdir, record.name, kind)) {
        return `its ${key} path ${quoteName(String(value))} is not the one the tool derives (${quoteName(derived[key])})`;
      }
    }
    if (record.steps !== undefined && !Array.isArray(record.steps)) return 'its steps are not a list';
    const data: unknown = record.data;
    if (data !== undefined && (typeof data !== 'object' || data === null || Array.isArray(data)))
      return "its plugins' data is not an object";
    return undefined;
  }

  private async recoverLocked(record: JobRecord, signal: AbortSignal, lock: Lock | undefined, slots?: Slots): Promise<Outcome> {
    const started = Date.now();
    const problem = this.untrusted(record);
    if (problem !== undefined) {
      const message = `journal record ${record.id} is not trusted (${problem}); nothing was read from it or changed; inspect ${quoteName(this.journal.file(record.id))}`;
      this.log.error(message, { step: 'recover' });
      return { kind: 'failed', message, durationMs: Date.now() - started, error: new RefusedError(message) };
    }
    const job = new JobImpl(this.context, { ...record, pid: process.pid, steps: record.steps ?? [] }, this.journal, signal, this.hooks);
    job.guard = lockGuard(lock);
    job.slot = new SlotHold(slots, await ownerOf(this.context.rootdir, record.name));
    job.observers = this.options.observers ?? [];
    // A recovery inside handle() runs under the same name: the outer job's entry is put back after.
    const outer = this.running.get(record.name);
    this.running.set(record.name, { job, since: new Date(started).toISOString() });
    let ending: Promise<void> = Promise.resolve();
    const done = (kind: OutcomeKind, message: string, error?: Error): Outcome => {
      job.log[kind === 'failed' ? 'error' : 'notice'](message, { step: 'recover' });
      const outcome: Outcome = { kind, message, durationMs: Date.now() - started, ...(error ? { error } : {}) };
      ending = this.ended(job, outcome);
      return outcome;
    };
    try {
      job.phase = 'recover';
      try {
        job.waitingFor = 'a work slot';
        await job.slot.take(signal);
      } catch {
        return done('deferred', 'stopped before its turn to work; the next run recovers it');
      } finally {
        job.waitingFor = undefined;
      }
      const assessment = await this.hooks.assess.promise(job);
      if (assessment?.fields) await job.setJournalledUnchecked(assessment.fields);
      // Recorded, not observed: the journal or the filesystem's own record says whether the
      // commit point was passed. Once it was, users may have written into the new filesystem.
      const committed = record.committed || (assessment?.committed ?? false);
      if (!committed) {
        if (assessment?.nothingLeft) {
          await job.forget();
          return done('rolled-back', 'recovery: nothing of the interrupted job was left; the directory is as it was');
        }
        await job.enter('recover');
        if (!this.runs('rollback', job.log))
          return done('rolled-back', 'dry run: recovery would roll back an interrupted job that had not reached its commit point');
        await this.hooks.rollback.promise(job, new Error(record.error ?? 'interrupted'));
        await job.forget();
        return done(
          'rolled-back',
          'recovery: rolled back an interrupted job that had not reached its commit point; the original directory is at its path, untouched',
        );
      }
      await job.commit();
      // Every phase after the commit again, from the swap: each is idempotent, and whatever the
      // journal's phase, the filesystem may since have been unmounted (zpool import -N, a failed
      // mount at boot, an administrator): the swap puts it back in place first.
      for (const phase of AFTER_COMMIT) {
        await job.enter(phase);
        if (this.runs(phase, job.log)) await this.hooks[phase].promise(job);
      }
      await job.forget();
      const what = record.status === 'cleanup-pending' ? 'finished the cleanup a run left to it' : 'finished an interrupted job';
      return done('recovered', `recovery: ${what}; converted into ${job.record.filesystem ?? 'a new filesystem'}`);
    } catch (error) {
      if (error instanceof LockLostError) return done('failed', lockLostReport(job, error), error);
      await job.markStatus('incomplete', oneLine(error)).catch(() => undefined);
      // Asked to stop (SIGTERM) meanwhile: the job stays in the journal for the next run.
      if (signal.aborted)
        return done(
          'deferred',
          `stopped during recovery: ${oneLine(error)}; the next run for this root, or 'zfs-dynamic-creator recover', finishes it`,
        );
      return done('failed', `recovery failed: ${oneLine(error)}`, asError(error));
    } finally {
      job.slot.give();
      if (outer) this.running.set(record.name, outer);
      else this.running.delete(record.name);
      await ending;
    }
  }

  /** Records a refusal, or forgets an earlier one once the directory got any other answer. */
  private async rememberOutcome(name: string, outcome: Outcome): Promise<void> {
    if (outcome.kind === 'refused') await this.refusals.remember(name, outcome.message);
    else await this.refusals.forget(name);
  }

  /** Tells the run and the observers that a job ended; a failing observer is logged, never fatal. */
  private async ended(job: JobImpl, outcome: Outcome): Promise<void> {
    await this.noteRun(job, outcome).catch((e: unknown) => job.log.warn(`the run's state could not be recorded: ${oneLine(e)}`));
    for (const observer of job.observers) {
      try {
        await observer.end?.(job.live, outcome, job.record);
      } catch (error) {
        job.log.warn(`could not record the job's end (${oneLine(error)})`);
      }
    }
  }

  /** Notes a fact of the job's run: bookkeeping for status and events, so a failure is a warning, never the job's. */
  private async recordRun(job: JobImpl, fact: RunFact): Promise<void> {
    await this.context.runs
      .note(job.name, fact)
      .catch((e: unknown) => job.log.warn(`the run's state could not be recorded: ${oneLine(e)}`));
  }

  /** The run's state after a job: converted, or waiting again when a conversion it started ended otherwise. */
  private async noteRun(job: JobImpl, outcome: Outcome): Promise<void> {
    const runs = this.context.runs;
    if (outcome.kind === 'converted' || outcome.kind === 'recovered') {
      if (job.record.committed || this.context.dryRun)
        await runs.note(job.name, { kind: 'converted', ...(job.record.filesystem ? { dataset: job.record.filesystem } : {}) });
      return;
    }
    if ((await runs.get(job.name))?.state === 'converting') await runs.note(job.name, { kind: 'unconverted', note: outcome.message });
  }

  /**
   * Whether a hook runs now: always, except in a dry run for a hook whose contract says it does
   * not run in one; then what it would do is logged instead.
   */
  private runs(hook: HookName, log: Logger): boolean {
    if (!this.context.dryRun || CONTRACT[hook].dryRun) return true;
    log.info(`would ${CONTRACT[hook].description}`, { step: hook });
    return false;
  }

  /** Learns the state of the root: plain directories, filesystems, leftovers. */
  async survey(): Promise<Survey> {
    await this.prepare();
    try {
      return await this.surveyPrepared();
    } catch (error) {
      // The root may have gone since it was prepared (a pool exported under the daemon): a fresh
      // prepare says so (RootGoneError); else the survey's own error stands.
      this.prepared = undefined;
      await this.prepare();
      throw error;
    }
  }

  private async surveyPrepared(): Promise<Survey> {
    const directories = new Set<string>();
    const ignored = new Set<string>();
    const layout = this.context.layout;
    if (layout !== undefined && layout.depth > 1) {
      const walk = await walkLevels(this.context.rootdir, layout);
      for (const name of walk.runs) directories.add(name);
      for (const name of [...walk.ignored, ...walk.unfit]) ignored.add(name);
      for (const name of walk.unreadable) this.unreadable(name);
      return this.surveyed(directories, ignored, new Set(walk.unfit));
    }
    for (const raw of await this.rootDirectories()) {
      const name = raw.toString('utf8');
      // The root dataset's own .zfs (snapdir=visible) is ZFS's, never a directory to convert.
      if (isHelperName(name) || (name === '.zfs' && (await this.isZfsControlDir(raw)))) {
        ignored.add(name);
      } else if (Buffer.from(name, 'utf8').equals(raw)) {
        directories.add(name);
      } else {
        this.unreadable(name);
      }
    }
    return this.surveyed(directories, ignored);
  }

  /**
   * The names of the root's directories. Their types come from the listing itself (d_type), not
   * from one lstat each: with thousands of mounted datasets each lstat would cross into a mount.
   * Where the filesystem gives no type (zfs-fuse), Node lstats each entry and fails the whole
   * listing when one vanished meanwhile; then each is looked at here, and one gone is passed over.
   */
  private async rootDirectories(): Promise<Buffer[]> {
    const rootdir = this.context.rootdir;
    try {
      const entries = await readdir(rootdir, { encoding: 'buffer', withFileTypes: true });
      return entries.filter((e) => e.isDirectory()).map((e) => e.name);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
    }
    const names: Buffer[] = [];
    for (const raw of await readdir(rootdir, { encoding: 'buffer' })) {
      const stats = await this.lstatRootEntry(raw);
      if (stats?.isDirectory()) names.push(raw);
    }
    return names;
  }

  /** The root's entry `raw`, or undefined when it vanished. */
  private lstatRootEntry(raw: Buffer): Promise<Stats | undefined> {
    return lstat(Buffer.concat([Buffer.from(`${this.context.rootdir}/`), raw])).catch((error: unknown) => {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    });
  }

  /** Whether the root's entry `raw` is ZFS's control directory (by its inode); one that vanished is not. */
  private async isZfsControlDir(raw: Buffer): Promise<boolean> {
    const stats = await this.lstatRootEntry(raw);
    return stats?.isDirectory() === true && isZfsControlDir({ name: '.zfs', type: 'dir', ino: stats.ino });
  }

  /** A name that is not UTF-8 cannot be named to zfs (nor be a dataset name): left, said once. */
  private unreadable(name: string): void {
    if (this.unreadableNames.has(name)) return;
    this.unreadableNames.add(name);
    this.log.warn(`${quoteName(name)} is not valid UTF-8 and cannot become a ZFS dataset; left as it is`, { step: 'survey' });
  }

  private async surveyed(directories: Set<string>, ignored: Set<string>, unfit?: Set<string>): Promise<Survey> {
    const leftovers = new Set((await this.journal.list(this.context.rootdir)).map((r) => r.name));
    const base: Survey = { directories, filesystems: new Map(), leftovers, ignored, ...(unfit ? { unfit } : {}) };
    return this.hooks.survey.promise(base, this.context);
  }

  /** Names that are plain directories waiting to be converted. */
  static candidates(survey: Survey): string[] {
    return [...survey.directories].filter((n) => !survey.filesystems.has(n) && !survey.ignored.has(n) && !survey.leftovers.has(n)).sort();
  }

  async sync(survey?: Survey): Promise<void> {
    await this.hooks.sync.promise(this.context, survey ?? (await this.survey()));
  }
}

/**
 * ": 1,234 files, 5.6 MiB in 7.8 s (copy 2.0 s, 2.8 MiB/s)" for the end of a job: the wall time
 * (waits included) and the rate over the copy alone; "(0.7 MiB/s)" over the wall time when the
 * copy's time is not known; nothing when it was not counted.
 */
export function summary(copied: { files: number; bytes: number } | undefined, ms: number, copy?: number): string {
  if (copied === undefined || !Number.isFinite(copied.files) || !Number.isFinite(copied.bytes)) return '';
  const seconds = Math.max(ms, 1) / 1000;
  const mib = copied.bytes / 2 ** 20;
  const rate =
    copy === undefined
      ? `${(mib / seconds).toFixed(1)} MiB/s`
      : `copy ${(copy / 1000).toFixed(1)} s, ${(mib / (Math.max(copy, 1) / 1000)).toFixed(1)} MiB/s`;
  return `: ${copied.files.toLocaleString('en-US')} file${copied.files === 1 ? '' : 's'}, ${mib.toFixed(1)} MiB in ${seconds.toFixed(1)} s (${rate})`;
}

/** How long the migrate phase's copy step took (to the start of the step after it), from the journalled steps. */
export function copyMs(steps: readonly StepRecord[]): number | undefined {
  const i = steps.findLastIndex((s) => s.phase === 'migrate' && s.step === 'copy' && s.state === 'done');
  const next = steps[i + 1];
  if (i < 0 || next === undefined) return undefined;
  const ms = Date.parse(next.at) - Date.parse(steps[i]!.at);
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/**
 * A name must be one path component, or with a layout (levels.ts) the relative path of a run at
 * its depth; everything else about it is the filter's business.
 */
function checkName(name: string, layout?: Layout): void {
  if (typeof name === 'string' && layout !== undefined && layout.depth > 1) {
    const problem = layoutProblem(name, layout);
    if (problem !== undefined) throw new RefusedError(`${quoteName(name)} is not a run of this root's layout: ${problem}`);
    return;
  }
  if (typeof name !== 'string' || name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new RefusedError(`${quoteName(String(name))} is not a directory name`);
  }
}

/**
 * Whose job a directory's is, for the fair turns (core/slots.ts): the uid of its original
 * directory (originalPlace: kept in the holding directory, or at its path), or UNKNOWN_OWNER. Scheduling only:
 * nothing is decided about the data from it.
 */
export async function ownerOf(rootdir: string, name: string): Promise<number> {
  const place = await originalPlace({ root: { rootdir }, name }).catch(() => undefined);
  return place?.uid ?? UNKNOWN_OWNER;
}

/** Stops a job whose lock file was removed or replaced, before it writes or changes anything more. */
function lockGuard(lock: Lock | undefined): () => Promise<void> {
  return async () => {
    if (!lock) return;
    try {
      await lock.check();
    } catch (error) {
      throw new LockLostError(oneLine(error));
    }
  };
}

/** What a job that lost its lock says: exactly where it stopped, nothing it did not do. */
function lockLostReport(job: JobImpl, error: Error): string {
  const where = job.record.committed
    ? `after its commit point (the new filesystem ${job.record.filesystem ?? ''} is in place${job.record.aside ? `, the original may still be at ${quoteName(job.record.aside)}` : ''})`
    : 'before its commit point (the original directory was not removed)';
  return `${error.message}; this process stopped ${where} and wrote nothing more, not even its journal; 'zfs-dynamic-creator status' shows the job`;
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
