/**
 * Runs jobs through the lifecycle for one root: filter, wait, provision,
 * migrate, swap, cleanup, publish; on failure, rollback before the commit and
 * recovery after it. Knows no plugin by name.
 */
import { lstat, readdir } from 'node:fs/promises';
import { createHooks, PHASE_ORDER, type Hooks } from './hooks.js';
import { BusyError, RefusedError, oneLine, quoteName } from './errors.js';
import { isErrno } from './fsutil.js';
import { JobImpl, newRecord } from './job.js';
import { Journal, jobId } from './journal.js';
import { acquireLock, type Lock } from './lock.js';
import type {
  Identity,
  JobRecord,
  Logger,
  Outcome,
  OutcomeKind,
  PhaseName,
  RootContext,
  Survey,
} from './types.js';
import type { LoadedPlugin } from './loader.js';
import { createLogger, type LogSink } from './logger.js';
import { isHelperName } from './helpers.js';

export interface EngineOptions {
  readonly rootfs: string;
  readonly rootdir: string;
  readonly stateDir: string;
  readonly dryRun: boolean;
  /** Where log records go besides hooks.log (stderr, usually). */
  readonly sinks: readonly LogSink[];
  readonly lockStaleMs: number;
}

export interface HandleOptions {
  readonly signal?: AbortSignal;
  /** How long to wait for another process's lock on the same directory (default: not at all). */
  readonly lockWaitMs?: number;
}

const AFTER_COMMIT: readonly PhaseName[] = ['swap', 'cleanup', 'publish'];

export class RootEngine {
  readonly hooks: Hooks = createHooks();
  readonly context: RootContext;
  readonly journal: Journal;
  plugins: LoadedPlugin[] = [];
  private prepared: Promise<void> | undefined;
  /** Names seen in a survey that are not UTF-8 (warned about once). */
  private readonly unreadableNames = new Set<string>();

  constructor(private readonly options: EngineOptions) {
    const log = createLogger([...options.sinks, (record) => this.hooks.log.call(record)], { rootdir: options.rootdir });
    this.context = {
      rootfs: options.rootfs,
      rootdir: options.rootdir,
      log,
      dryRun: options.dryRun,
      stateDir: options.stateDir,
    };
    this.journal = new Journal(options.stateDir);
  }

  get log(): Logger {
    return this.context.log;
  }

  /** Runs the prepare hook (environment checks) once it has passed; a failure is tried again next time. */
  prepare(): Promise<void> {
    this.prepared ??= this.hooks.prepare.promise(this.context).catch((error: unknown) => {
      this.prepared = undefined;
      throw error;
    });
    return this.prepared;
  }

  /** Converts one directory, a direct child of rootdir. Never throws: the outcome says what happened. */
  async handle(name: string, options: HandleOptions = {}): Promise<Outcome> {
    const started = Date.now();
    const signal = options.signal ?? new AbortController().signal;
    const id = jobId(this.context.rootdir, name);
    const job = new JobImpl(this.context, newRecord(this.context, id, name), this.journal, signal, this.hooks);
    let lock: Lock | undefined;
    const finish = async (kind: OutcomeKind, message: string, error?: Error): Promise<Outcome> => {
      const outcome: Outcome = { kind, message, durationMs: Date.now() - started, ...(error ? { error } : {}) };
      const level = kind === 'failed' ? 'error' : kind === 'deferred' ? 'warn' : kind === 'converted' || kind === 'recovered' ? 'notice' : 'info';
      job.log[level](message, { step: 'outcome' });
      await this.hooks.outcome.promise(job, outcome).catch((e: unknown) => job.log.warn(`an outcome hook failed: ${oneLine(e)}`));
      return outcome;
    };
    try {
      checkName(name);
      await this.prepare();
      if (!this.context.dryRun) {
        const waitMs = this.lockWaitFor(await this.journal.read(id).catch(() => undefined), options.lockWaitMs);
        lock = await acquireLock(this.context.stateDir, id, { staleMs: this.options.lockStaleMs, waitMs });
        job.guard = lockGuard(lock);
      }
      // An interrupted job for this name is finished (or undone) first.
      const leftover = await this.journal.read(id);
      if (leftover) {
        const recovered = await this.recoverLocked(leftover, signal, lock);
        if (recovered.kind === 'failed' || leftover.committed) return await finish(recovered.kind, recovered.message, recovered.error);
      }
      const identity = await directoryIdentity(job.path);
      job.note({ identity });

      job.phase = 'filter';
      const skip = await this.hooks.filter.promise(job);
      if (skip) return await finish('skipped', `skipped: ${skip.skip}`);

      job.phase = 'wait';
      if (!this.context.dryRun) {
        const defer = await this.hooks.wait.promise(job);
        if (defer) return await finish('deferred', `deferred: ${defer.defer}`);
      } else {
        job.log.info('would wait until the directory is quiet', { step: 'wait' });
      }
      // What we convert must still be the directory we looked at.
      await assertSameDirectory(job.path, identity);

      for (const phase of PHASE_ORDER.slice(2)) {
        try {
          await job.enter(phase);
          await this.hooks[phase].promise(job);
        } catch (error) {
          return await finish('failed', await this.failed(job, phase, error), asError(error));
        }
      }
      await job.forget();
      return await finish('converted', this.context.dryRun ? 'dry run: nothing was changed' : `converted into ${job.record.filesystem ?? 'a new filesystem'}`);
    } catch (error) {
      if (error instanceof BusyError) return await finish('busy', `left alone: ${error.message}`);
      // Refused before anything changed: nothing to undo.
      if (job.hasJournal && !job.record.committed) await job.forget();
      return await finish('failed', oneLine(error), asError(error));
    } finally {
      await lock?.release();
    }
  }

  /** Failure path: roll back before the commit, keep everything for recovery after it. */
  private async failed(job: JobImpl, phase: PhaseName, error: unknown): Promise<string> {
    const reason = `${phase} failed: ${oneLine(error)}`;
    if (job.dryRun) return reason;
    if (job.record.committed) {
      await job.markStatus('incomplete', reason);
      const kept = job.record.aside ? `; the original is kept at ${quoteName(job.record.aside)}` : '';
      return `${reason}; the new filesystem is live${kept}; 'zfs-dynamic-creator recover' will finish the job`;
    }
    await job.markStatus('rolling-back', reason);
    try {
      await job.enter('recover');
      await this.hooks.rollback.promise(job, asError(error));
    } catch (rollbackError) {
      await job.markStatus('incomplete', `${reason}; rollback failed: ${oneLine(rollbackError)}`);
      return `${reason}; rollback failed: ${oneLine(rollbackError)}; 'zfs-dynamic-creator recover' will retry`;
    }
    await job.forget();
    return `${reason}; rolled back, the original directory is untouched`;
  }

  /** Finishes or undoes one interrupted job, taking its lock. */
  async recover(record: JobRecord, options: HandleOptions = {}): Promise<Outcome> {
    let lock: Lock | undefined;
    const started = Date.now();
    try {
      await this.prepare();
      const waitMs = this.lockWaitFor(record, options.lockWaitMs);
      lock = await acquireLock(this.context.stateDir, record.id, { staleMs: this.options.lockStaleMs, waitMs });
      const fresh = (await this.journal.read(record.id)) ?? record;
      return await this.recoverLocked(fresh, options.signal ?? new AbortController().signal, lock);
    } catch (error) {
      const kind: OutcomeKind = error instanceof BusyError ? 'busy' : 'failed';
      return { kind, message: oneLine(error), durationMs: Date.now() - started, error: asError(error) };
    } finally {
      await lock?.release();
    }
  }

  /**
   * How long to wait for a job's lock. When the journal says the job belongs to a process that
   * no longer exists (killed, crashed, rebooted), its lock is abandoned and goes stale within
   * lockStaleSeconds: waiting that long beats answering "busy" for a job nobody is running.
   */
  private lockWaitFor(record: JobRecord | undefined, asked: number | undefined): number {
    const wait = asked ?? 0;
    if (record === undefined || record.pid === process.pid || processAlive(record.pid)) return wait;
    return Math.max(wait, this.options.lockStaleMs + 2000);
  }

  /** A record for an interrupted job found on disk but not in the journal. */
  orphanRecord(name: string): JobRecord {
    const record = newRecord(this.context, jobId(this.context.rootdir, name), name);
    record.status = 'incomplete';
    return record;
  }

  private async recoverLocked(record: JobRecord, signal: AbortSignal, lock: Lock | undefined): Promise<Outcome> {
    const started = Date.now();
    const job = new JobImpl(this.context, { ...record, pid: process.pid }, this.journal, signal, this.hooks);
    job.guard = lockGuard(lock);
    const done = (kind: OutcomeKind, message: string, error?: Error): Outcome => {
      job.log[kind === 'failed' ? 'error' : 'notice'](message, { step: 'recover' });
      return { kind, message, durationMs: Date.now() - started, ...(error ? { error } : {}) };
    };
    try {
      job.phase = 'recover';
      const assessment = await this.hooks.assess.promise(job);
      if (assessment?.fields) await job.set(assessment.fields);
      const committed = assessment?.committed ?? record.committed;
      if (assessment?.nothingLeft && !committed) {
        await job.forget();
        return done('rolled-back', 'recovery: nothing of the interrupted job was left; the directory is as it was');
      }
      if (!committed) {
        await job.enter('recover');
        await this.hooks.rollback.promise(job, new Error(record.error ?? 'interrupted'));
        await job.forget();
        return done('rolled-back', 'recovery: rolled back an interrupted job; the original directory is untouched');
      }
      if (!job.record.committed) await job.commit();
      const from = record.phase === 'cleanup' || record.phase === 'publish' ? record.phase : 'swap';
      for (const phase of AFTER_COMMIT.slice(AFTER_COMMIT.indexOf(from))) {
        await job.enter(phase);
        await this.hooks[phase].promise(job);
      }
      await job.forget();
      return done('recovered', `recovery: finished an interrupted job; converted into ${job.record.filesystem ?? 'a new filesystem'}`);
    } catch (error) {
      await job.markStatus('incomplete', oneLine(error)).catch(() => undefined);
      return done('failed', `recovery failed: ${oneLine(error)}`, asError(error));
    }
  }

  /** Learns the state of the root: plain directories, filesystems, leftovers. */
  async survey(): Promise<Survey> {
    await this.prepare();
    const directories = new Set<string>();
    const ignored = new Set<string>();
    // Names only, then one lstat each: an entry that vanishes meanwhile (a job's helper
    // directory, a directory removed by its owner) is passed over, not an error.
    for (const raw of await readdir(this.context.rootdir, { encoding: 'buffer' })) {
      const name = raw.toString('utf8');
      const stats = await lstat(Buffer.concat([Buffer.from(`${this.context.rootdir}/`), raw])).catch((error: unknown) => {
        if (isErrno(error, 'ENOENT')) return undefined;
        throw error;
      });
      if (!stats?.isDirectory()) continue;
      if (isHelperName(name)) {
        ignored.add(name);
      } else if (Buffer.from(name, 'utf8').equals(raw)) {
        directories.add(name);
      } else if (!this.unreadableNames.has(name)) {
        // A name that is not UTF-8 cannot be named to zfs (nor be a dataset name): leave it, say so once.
        this.unreadableNames.add(name);
        this.log.warn(`${quoteName(name)} is not valid UTF-8 and cannot become a ZFS dataset; left as it is`, { step: 'survey' });
      }
    }
    const leftovers = new Set((await this.journal.list(this.context.rootdir)).map((r) => r.name));
    const base: Survey = { directories, filesystems: new Map(), leftovers, ignored };
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

/** A name must be one path component; everything else about it is the filter's business. */
function checkName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new RefusedError(`${quoteName(name)} is not a directory name`);
  }
}

async function directoryIdentity(path: string): Promise<Identity> {
  let stats;
  try {
    stats = await lstat(path);
  } catch (error) {
    if (isErrno(error, 'ENOENT')) {
      if (path.includes('\uFFFD')) throw new RefusedError(`${quoteName(path)} is not valid UTF-8 and cannot become a ZFS dataset; left as it is`);
      throw new RefusedError(`${quoteName(path)} vanished before its turn; nothing to do`);
    }
    throw error;
  }
  if (stats.isSymbolicLink()) throw new RefusedError(`${quoteName(path)} is a symbolic link, not a directory; left alone`);
  if (!stats.isDirectory()) throw new RefusedError(`${quoteName(path)} is not a directory; left alone`);
  return { dev: stats.dev, ino: stats.ino };
}

/** Throws unless `path` is still the directory with this identity. */
export async function assertSameDirectory(path: string, identity: Identity): Promise<void> {
  const now = await directoryIdentity(path);
  if (now.dev !== identity.dev || now.ino !== identity.ino) {
    throw new RefusedError(`${quoteName(path)} was replaced by another directory; left alone`);
  }
}

/** Stops a job whose lock was lost before it takes another step. */
function lockGuard(lock: Lock | undefined): () => void {
  return () => {
    if (lock?.compromised) throw new Error(`lost the lock on this directory (${oneLine(lock.compromised)}); stopping before the next step`);
  };
}

/** Whether a process with this id exists (on this machine). */
function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return !isErrno(error, 'ESRCH');
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}
