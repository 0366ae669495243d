/** One job: a directory going through the lifecycle, journalled step by step. */
import { CONTRACT, JOB_FIELDS, phasesSetting, type JobField } from './contract.js';
import { ContractError } from './errors.js';
import type { Hooks } from './hooks.js';
import type { Journal } from './journal.js';
import { SlotHold } from './slots.js';
import { newProgress, type JobObserver, type JobProgress, type ProgressReport } from './progress.js';
import type { Job, JobData, JobFields, JobRecord, Logger, PhaseName, PluginSpec, RootContext, StepOptions } from './types.js';

export class JobImpl implements Job {
  readonly id: string;
  readonly name: string;
  readonly path: string;
  /** What the job is doing now, for observers (a live line, metrics): see progress.ts. */
  readonly live: JobProgress;
  /** Told of every change of phase, step, wait and count (set by the engine). */
  observers: readonly JobObserver[] = [];
  private currentPhase: PhaseName | 'recover' = 'filter';
  private currentWait: string | undefined;
  /**
   * Called before every journal write, phase and step: throws when this process may no longer
   * act for the job (its lock file was removed or replaced). After that the job writes nothing,
   * not even the journal, and says truthfully where it stopped.
   */
  guard: () => Promise<void> = async () => undefined;
  /** The tap (plugin) running now, set by the hooks while it runs: its log lines name it. */
  actingPlugin: string | undefined;
  /** The job's hold on a work slot (the engine takes it for the phases that work). */
  slot: SlotHold = new SlotHold(undefined);
  get phase(): PhaseName | 'recover' {
    return this.currentPhase;
  }

  set phase(phase: PhaseName | 'recover') {
    this.currentPhase = phase;
    if (this.live.phase === phase) return;
    this.live.phase = phase;
    this.live.phaseSince = Date.now();
    this.live.step = undefined;
    this.notify();
  }

  /** What the job waits for now, without a work slot (see waiting()); for status. */
  get waitingFor(): string | undefined {
    return this.currentWait;
  }

  set waitingFor(reason: string | undefined) {
    this.currentWait = reason;
    this.live.waiting = reason === undefined ? undefined : { reason, since: Date.now() };
    if (reason === undefined) this.live.note = undefined;
    this.notify();
  }
  /** Whether anything has been written to the journal for this job. */
  private journalled = false;

  constructor(
    readonly root: RootContext,
    private readonly state: JobRecord,
    private readonly journal: Journal,
    readonly signal: AbortSignal,
    /** The root's hooks, for the `step` hook (absent in tests that build a job alone). */
    private readonly hooks?: Pick<Hooks, 'step'>,
  ) {
    this.id = state.id;
    this.name = state.name;
    this.path = `${root.rootdir}/${state.name}`;
    this.journalled = state.steps.length > 0 || state.phase !== 'new';
    this.live = newProgress({
      rootdir: root.rootdir,
      name: state.name,
      dryRun: root.dryRun,
      log: root.log.child({ dir: state.name }),
      phase: this.currentPhase,
    });
  }

  progress(report: ProgressReport): void {
    const live = this.live;
    if (report.files !== undefined) live.files = report.files;
    if (report.bytes !== undefined) live.bytes = report.bytes;
    if (report.totalFiles !== undefined) live.totalFiles = report.totalFiles;
    if (report.totalBytes !== undefined) live.totalBytes = report.totalBytes;
    if (report.note !== undefined) live.note = report.note === '' ? undefined : report.note;
    this.notify();
  }

  /** Between steps: no step, no counts (the totals stay). */
  private stepEnded(): void {
    Object.assign(this.live, { step: undefined, files: undefined, bytes: undefined, note: undefined });
    this.notify();
  }

  private notify(): void {
    for (const observer of this.observers) {
      try {
        observer.update(this.live);
      } catch {
        // watching must never break a job
      }
    }
  }

  /** Names the directory, the new filesystem once a plugin has recorded it, and the plugin whose tap is running. */
  get log(): Logger {
    return this.root.log.child({
      dir: this.state.name,
      ...(this.state.filesystem !== undefined ? { filesystem: this.state.filesystem } : {}),
      ...(this.actingPlugin !== undefined ? { plugin: this.actingPlugin } : {}),
    });
  }

  get dryRun(): boolean {
    return this.root.dryRun;
  }

  get record(): Readonly<JobRecord> {
    return this.state;
  }

  /** Enter a phase: journalled before any of its taps run. */
  async enter(phase: PhaseName | 'recover'): Promise<void> {
    this.phase = phase;
    if (phase !== 'recover') this.state.phase = phase;
    await this.save();
  }

  step<T>(name: string, description: string, action: () => Promise<T>): Promise<T | undefined>;
  step<T>(name: string, description: string, action: () => Promise<T>, options: StepOptions<T>): Promise<T>;
  async step<T>(name: string, description: string, action: () => Promise<T>, options?: StepOptions<T>): Promise<T | undefined> {
    const fields = { step: `${this.phase}/${name}` };
    if (this.dryRun) {
      this.log.info(`would ${description}`, fields);
      return options?.dryRun;
    }
    const entry = { step: name, phase: this.phase, state: 'started' as 'started' | 'done', at: new Date().toISOString() };
    this.state.steps.push(entry);
    await this.save();
    await this.hooks?.step.promise(this, fields.step, 'before');
    this.log.info(description, fields);
    Object.assign(this.live, { step: fields.step, stepSince: Date.now(), files: undefined, bytes: undefined, note: undefined });
    this.notify();
    let result: T;
    try {
      result = await action();
    } catch (error) {
      this.stepEnded();
      // The step ended (badly): taps hear it before the failure goes on; theirs cannot mask it.
      await this.hooks?.step
        .promise(this, fields.step, 'end')
        .catch((e: unknown) =>
          this.log.warn(`a step hook failed at the end of ${fields.step}: ${e instanceof Error ? e.message : String(e)}`, fields),
        );
      throw error;
    }
    this.stepEnded();
    await this.hooks?.step.promise(this, fields.step, 'end');
    entry.state = 'done';
    await this.save();
    await this.hooks?.step.promise(this, fields.step, 'after');
    return result;
  }

  /** The engine's: sets fields in memory only; the first journalled phase writes them (durably). */
  setInMemory(fields: JobFields): void {
    Object.assign(this.state, fields);
  }

  /** Sets job fields the current phase sets (checked: contract.ts) and journals them durably before returning. */
  async setJournalled(fields: JobFields): Promise<void> {
    this.checkFields(fields);
    Object.assign(this.state, fields);
    await this.save();
  }

  /** The engine's: journals fields an `assess` tap found on disk, durably, whatever the phase (not checked). */
  async setJournalledUnchecked(fields: JobFields): Promise<void> {
    Object.assign(this.state, fields);
    await this.save();
  }

  /** @deprecated the same as setJournalled() (its old name). */
  set(fields: JobFields): Promise<void> {
    return this.setJournalled(fields);
  }

  /**
   * Throws a ContractError unless every field is a job field the current phase sets (contract.ts).
   * Its messages say job.set(), the name plugins knew it by (test/unit/job.test.ts asserts them).
   */
  private checkFields(fields: JobFields): void {
    const who = this.actingPlugin !== undefined ? `plugin "${this.actingPlugin}"` : 'a plugin';
    const where = this.phase === 'recover' ? 'a rollback' : `the ${this.phase} phase`;
    const sets: readonly JobField[] = this.phase === 'recover' ? [] : (CONTRACT[this.phase].phase?.sets ?? []);
    for (const key of Object.keys(fields)) {
      if (!(JOB_FIELDS as readonly string[]).includes(key)) {
        throw new ContractError(
          `${who}: job.set() in ${where} of ${JSON.stringify(key)}, which is not a job field (${JOB_FIELDS.join(', ')}); a plugin's own data goes in job.data()`,
        );
      }
      if (!sets.includes(key as JobField)) {
        const setters = phasesSetting(key as JobField);
        const by = setters.length > 0 ? `only the ${setters.join(' and ')} phase sets it` : 'the engine records it';
        throw new ContractError(
          `${who}: job.set() of the job field "${key}" in ${where}, which does not set it (${by}; src/core/contract.ts)`,
        );
      }
    }
  }

  data<T>(plugin?: string): JobData<T> {
    const owner = plugin ?? this.actingPlugin;
    if (owner === undefined || owner === '')
      throw new ContractError('job.data() outside a tap needs the name of the plugin whose data it is');
    const write = async (value: unknown): Promise<void> => {
      if (this.actingPlugin !== undefined && this.actingPlugin !== owner) {
        throw new ContractError(
          `plugin "${this.actingPlugin}": job.data(${JSON.stringify(owner)}).set() writes another plugin's data; a plugin writes only its own`,
        );
      }
      const data = { ...(this.state.data ?? {}) };
      if (value === undefined) delete data[owner];
      else data[owner] = value;
      if (Object.keys(data).length > 0) this.state.data = data;
      else delete this.state.data;
      // In filter and wait, which journal nothing, kept in memory: the first journalled phase writes it.
      if (this.phase !== 'recover' && !CONTRACT[this.phase].phase!.journalled) return;
      await this.save();
    };
    return {
      get: () => {
        const value = this.state.data?.[owner];
        return value === undefined ? undefined : (structuredClone(value) as T);
      },
      set: async (value: T) => {
        const json = JSON.stringify(value) as string | undefined;
        if (json === undefined)
          throw new ContractError(`job.data(${JSON.stringify(owner)}).set(): the value is not JSON; use clear() to remove it`);
        await write(JSON.parse(json));
      },
      clear: () => write(undefined),
    };
  }

  async commit(): Promise<void> {
    if (this.state.committed) return;
    this.state.committed = true;
    await this.save();
    this.log.info('commit point: from here on the job is finished, never rolled back', { step: `${this.phase}/commit` });
  }

  async waiting<T>(reason: string, wait: () => Promise<T>): Promise<T> {
    const had = this.slot.held;
    this.slot.give();
    this.waitingFor = reason;
    let result: T;
    try {
      result = await wait();
    } finally {
      this.waitingFor = undefined;
    }
    if (had) {
      this.waitingFor = 'a work slot';
      try {
        await this.slot.take(this.signal);
      } catch {
        throw new Error(`stopped after the ${reason}, before its turn to work again`);
      } finally {
        this.waitingFor = undefined;
      }
    }
    return result;
  }

  async markStatus(status: JobRecord['status'], error?: string): Promise<void> {
    this.state.status = status;
    if (error !== undefined) this.state.error = error;
    await this.save();
  }

  /** The job ended and left nothing to finish or undo. */
  async forget(): Promise<void> {
    if (this.dryRun) return;
    await this.guard();
    await this.journal.remove(this.id);
  }

  private async save(): Promise<void> {
    if (this.dryRun) return;
    await this.guard();
    this.journalled = true;
    await this.journal.write(this.state);
  }

  get hasJournal(): boolean {
    return this.journalled;
  }
}

export function newRecord(
  root: RootContext,
  id: string,
  name: string,
  setup?: { plugins?: readonly PluginSpec[]; baseDir?: string },
): JobRecord {
  const now = new Date().toISOString();
  return {
    version: 1,
    id,
    rootfs: root.rootfs,
    rootdir: root.rootdir,
    name,
    phase: 'new',
    status: 'running',
    pid: process.pid,
    startedAt: now,
    updatedAt: now,
    committed: false,
    steps: [],
    ...(setup?.plugins ? { plugins: [...setup.plugins] } : {}),
    ...(setup?.baseDir ? { baseDir: setup.baseDir } : {}),
  };
}
