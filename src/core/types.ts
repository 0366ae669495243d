/**
 * The types a plugin author needs. Nothing here knows about any particular
 * filesystem, copy tool or export mechanism: those are plugins.
 */
import type { Hooks } from './hooks.js';
import type { JobField, OutcomeKind, PhaseName } from './contract.js';
import type { ProgressReport } from './progress.js';
import type { Runs } from './runs.js';

export type { JobField, OutcomeKind, PhaseName, ProgressReport };

export type LogLevel = 'debug' | 'info' | 'notice' | 'warning' | 'error';

/** One log event. Plugins that ship logs elsewhere (syslog) tap `hooks.log`. */
export interface LogRecord {
  readonly level: LogLevel;
  readonly message: string;
  readonly time: Date;
  /** The watched root directory, when the event belongs to one. */
  readonly rootdir?: string;
  /** The directory name (a direct child of rootdir) the event is about. */
  readonly dir?: string;
  /** The new filesystem's name, once known. */
  readonly filesystem?: string;
  /** The lifecycle phase or step, when the event belongs to one. */
  readonly step?: string;
  /** The plugin that logged it (through the logger of its context). */
  readonly plugin?: string;
}

export type LogFields = Partial<Pick<LogRecord, 'rootdir' | 'dir' | 'filesystem' | 'step' | 'plugin'>>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  notice(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every record. */
  child(fields: LogFields): Logger;
}

/** What a plugin knows about the root it serves. */
export interface RootInfo {
  /** The filesystem under which new filesystems are made (for ZFS: the parent dataset). */
  readonly rootfs: string;
  /** The directory that is watched: where rootfs is mounted. Absolute, no trailing slash. */
  readonly rootdir: string;
  /** Where its runs are (src/core/levels.ts); absent: its direct children. */
  readonly layout?: Layout;
}

/** Where a root's runs are: the directories at `depth` below it, their name the relative path (`exp/sample/run`). */
export interface Layout {
  readonly depth: number;
  /** One regular expression per level, the run's last, each component must match; none: any name. */
  readonly levels?: readonly string[];
  /** uids besides root that may own the directories above the runs (an instrument's service account). */
  readonly trustedOwners: readonly number[];
}

/** A root while a command runs: what plugins get in root-level hooks. */
export interface RootContext extends RootInfo {
  readonly log: Logger;
  readonly dryRun: boolean;
  /** Where durable state (journal, locks) lives. */
  readonly stateDir: string;
  /** The root's runs: their states and events (src/core/runs.ts). */
  readonly runs: Runs;
}

/** Identity of the original directory, recorded when the job starts, checked before every move. */
export interface Identity {
  readonly dev: number;
  readonly ino: number;
}

/** What the journal holds about a job. Written durably before every step that changes anything. */
export interface JobRecord {
  readonly version: 1;
  readonly id: string;
  readonly rootfs: string;
  readonly rootdir: string;
  readonly name: string;
  /** The phase the job is in (or last entered). */
  phase: PhaseName | 'new';
  /** cleanup-pending: committed and published; the cleanup was left to a later run (handle --no-wait). */
  status: 'running' | 'incomplete' | 'rolling-back' | 'cleanup-pending';
  pid: number;
  startedAt: string;
  updatedAt: string;
  identity?: Identity;
  /** Name of the new filesystem (for ZFS: the dataset). */
  filesystem?: string;
  /** Where the new filesystem is reachable before the swap. */
  staging?: string;
  /** Where the original directory was moved during the swap. */
  aside?: string;
  /**
   * Set (durably) just before the new filesystem is put at the original path. Before that, a
   * failure rolls back (the original never moved, or is moved back); from then on users may
   * write into the new filesystem, and the job is only ever finished, never rolled back,
   * whatever is mounted where at recovery time.
   */
  committed: boolean;
  /** The root's plugins as configured, so that `recover` can finish the job without a config. */
  plugins?: PluginSpec[];
  /** Where relative plugin paths resolve from (the config file's directory). */
  baseDir?: string;
  /**
   * What the copy holds, as verified just before the original is removed (told by the copy
   * plugin): regular files and the sum of their apparent sizes. The filesystem plugin records it
   * on the new filesystem with the conversion's history.
   */
  copied?: { files: number; bytes: number };
  /** Steps started and finished, in order. */
  steps: StepRecord[];
  error?: string;
  /**
   * Each plugin's own data, by plugin name (job.data()): JSON values only a plugin itself reads.
   * Absent in records written by versions before it, and until a plugin keeps something.
   */
  data?: Record<string, unknown>;
}

/** When the step hook is called: journalled as started; action returned or threw; journalled as done. */
export type StepWhen = 'before' | 'end' | 'after';

export interface StepRecord {
  readonly step: string;
  readonly phase: PhaseName | 'recover';
  state: 'started' | 'done';
  readonly at: string;
}

/**
 * The job fields of the cross-plugin contract, which later phases, other plugins and recovery
 * read: each is recorded (job.set) only in the phase that the contract says sets it
 * (PhaseContract.sets). A plugin's own data goes in its namespace instead (job.data()).
 */
export type JobFields = Partial<Pick<JobRecord, JobField>>;

/** For job.step(): what it returns in a dry run, where its action does not run. */
export interface StepOptions<T> {
  readonly dryRun: T;
}

/**
 * One plugin's namespace in the job record (JobRecord.data[plugin]): kept in the journal like
 * the job fields, so that the plugin's later phases and recovery (in another process) find it.
 */
export interface JobData<T> {
  /** What was last set (a copy: change it through set()), or undefined when nothing was. */
  get(): T | undefined;
  /**
   * Replaces the value and writes the journal durably before returning (in a dry run: in memory
   * only). The value must be JSON (what JSON.stringify keeps is what get() returns, now and in
   * recovery). Only the plugin the namespace belongs to may set it.
   */
  set(value: T): Promise<void>;
  /** Removes the value (durably). */
  clear(): Promise<void>;
}

/** One directory going through the lifecycle. */
export interface Job {
  readonly id: string;
  readonly root: RootContext;
  /** The directory's name: a direct child of rootdir. Data, never an option. */
  readonly name: string;
  /** rootdir/name */
  readonly path: string;
  readonly log: Logger;
  readonly dryRun: boolean;
  /** Aborted when the process is asked to stop (SIGTERM): long waits should give up and defer. */
  readonly signal: AbortSignal;
  /** A snapshot of the journal record. */
  readonly record: Readonly<JobRecord>;
  /** The phase being run. */
  readonly phase: PhaseName | 'recover';
  /**
   * Run one step that changes something. The step is journalled durably before
   * it starts and after it ends, logged, and in dry-run only described: its action does not run,
   * and the step returns `options.dryRun`, or undefined without options.
   *
   *   const r = await job.step('catch-up', 'catch up', () => pass(), { dryRun: NOTHING_COPIED }); // r: T
   *   await job.step('create', 'create the dataset', () => zfs.create(name));                      // void
   *
   * The three-argument form returns `T | undefined` (undefined in a dry run), as it always has.
   */
  step<T>(name: string, description: string, action: () => Promise<T>): Promise<T | undefined>;
  step<T>(name: string, description: string, action: () => Promise<T>, options: StepOptions<T>): Promise<T>;
  /**
   * Record job fields of the contract in the journal (durably, before it returns) for later phases
   * and for recovery. Only in the phase that sets them (CONTRACT[phase].phase.sets): otherwise,
   * and for a name that is not a job field, it throws a ContractError naming the plugin.
   */
  setJournalled(fields: JobFields): Promise<void>;
  /** @deprecated the same as setJournalled() (its old name). */
  set(fields: JobFields): Promise<void>;
  /**
   * A plugin's own namespace in the job record, journalled like job.setJournalled(). Without a name: the
   * namespace of the plugin whose tap is running (its tap name). With one, any plugin's may be
   * read; only its own written.
   *
   *   const mine = job.data<{ rounds: number }>(NAME);
   *   await mine.set({ rounds: (mine.get()?.rounds ?? 0) + 1 });
   */
  data<T>(plugin?: string): JobData<T>;
  /**
   * Mark the point of no return, durably, just BEFORE making the new filesystem visible at the
   * original path: from then on the job is finished, never rolled back.
   */
  commit(): Promise<void>;
  /**
   * Waiting is not work: runs `wait` (a quiet or grace period, a pause between passes) without
   * the job's work slot, so that other jobs copy meanwhile, and takes a slot again before it
   * returns. `reason` is what status shows while it waits ("grace period").
   */
  waiting<T>(reason: string, wait: () => Promise<T>): Promise<T>;
  /**
   * Report how far the current step (or wait) is, for a live line on a terminal and periodic
   * "still …" log lines elsewhere: counts so far, totals when known, a short note. Cheap: call
   * it as often as there is news (the display throttles). Counts start afresh with each step;
   * totals are kept (a wait that walked the tree may give them for the copy that follows).
   *
   *   job.progress({ totalFiles: 3000, totalBytes: 288e6 });   // the tree, as the wait saw it
   *   job.progress({ files: 120, bytes: 9.5e6 });             // during the copy
   */
  progress(report: ProgressReport): void;
}

/** Returned by a filter tap to leave a directory alone (exit 0). */
export interface Skip {
  readonly skip: string;
}

/** Returned by a wait tap to try again later (the directory stays as it is). */
export interface Defer {
  readonly defer: string;
  /** The run is not complete yet: the outcome is `waiting`, not `deferred` (no warning, no notification). */
  readonly waiting?: true;
  /** Look again after this long (the daemon queues it again then; default: the next sweep). */
  readonly recheckSeconds?: number;
}

/** Returned by an `assess` tap during recovery: what is on disk for an interrupted job. */
export interface Assessment {
  /**
   * Whether the filesystem's own record says the job passed its commit point (for ZFS: the
   * dataset's state property). Recovery rolls back only when neither this nor the journal says
   * so; what happens to be mounted where does not decide it.
   */
  readonly committed: boolean;
  /** Nothing of the job is left on disk (nothing to finish or undo). */
  readonly nothingLeft?: boolean;
  readonly fields?: JobFields;
}

/** How a job ended: the contract's one list (contract.ts OUTCOME_KINDS). */
export { OUTCOME_KINDS } from './contract.js';

export interface Outcome {
  readonly kind: OutcomeKind;
  /** One line, for people. */
  readonly message: string;
  readonly error?: Error;
  /** Milliseconds the job took. */
  readonly durationMs: number;
  /** A refusal recorded by an earlier run, answered from memory (nothing was tried or reported again). */
  readonly remembered?: boolean;
  /** waiting (or deferred): when to look again, in seconds, as the wait tap said. */
  readonly recheckSeconds?: number;
}

/** What a sweep of one root learns, in a constant number of external calls. */
export interface Survey {
  /** Names of plain directories directly under rootdir (not mountpoints, not hidden helpers). */
  readonly directories: Set<string>;
  /**
   * Names that are already their own filesystem under rootfs, with their mountpoints and, from
   * the plugin that found them, the filesystem's own name (for ZFS: the dataset, <rootfs>/<name>),
   * so that other plugins need not derive it.
   */
  readonly filesystems: Map<string, { mountpoint: string; mounted: boolean; filesystem?: string }>;
  /** Names with work left over by an interrupted job (found on disk, journal or not). */
  readonly leftovers: Set<string>;
  /** Names the plugins say must not be touched (for example: helper directories). */
  readonly ignored: Set<string>;
  /** Directories that do not fit the root's layout (levels.ts), also in `ignored`: left alone, listed by status. */
  readonly unfit?: Set<string>;
}

/** What a plugin gets when it is applied. */
export interface PluginContext<O = Record<string, unknown>> {
  readonly options: O;
  readonly root: RootInfo;
  /** The root's logger, named after the plugin: every record it makes carries the plugin's name. */
  readonly log: Logger;
  readonly dryRun: boolean;
  readonly stateDir: string;
}

/**
 * A plugin: a small object whose `apply` taps hooks by name.
 * A module given in the config default-exports one of these.
 */
export interface PluginDefinition<O = Record<string, unknown>> {
  readonly name: string;
  readonly version?: string;
  readonly description?: string;
  /**
   * Validates and completes the options given in the config. Anything with a
   * `parse(input): O` method fits, a zod schema included. Throwing names the key.
   */
  readonly options?: { parse(input: unknown): O };
  apply(hooks: Hooks, context: PluginContext<O>): void | Promise<void>;
}

/** In the config: "name" or ["name", { options }] (the semantic-release convention). */
export type PluginSpec = string | readonly [string, Record<string, unknown>];
