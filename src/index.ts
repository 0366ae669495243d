/**
 * zfs-dynamic-creator's plugin API: everything a plugin needs, and nothing of the engine.
 *
 *   import { definePlugin, STAGE, run, type Job } from 'zfs-dynamic-creator';
 *
 * The builtin plugins (plugins/*) import only from here (eslint's no-restricted-imports enforces
 * it), so a site plugin can do anything they do. The engine, the journal, the loader and the
 * command line are not part of it: they are imported from their own modules by the CLI and the
 * tests, and may change without notice. docs/architecture.md tells the lifecycle.
 */

// ---- defining a plugin: the lifecycle, its contract, the order between plugins ----------------------
export { definePlugin } from './core/plugin.js';
export { createHooks, ContractError, type Hooks } from './core/hooks.js';
export {
  CONTRACT,
  STAGE,
  HOOK_ORDER,
  PHASE_ORDER,
  JOURNALLED_PHASES,
  AFTER_COMMIT,
  JOB_FIELDS,
  OUTCOME_KINDS,
  phasesSetting,
  type HookContract,
  type HookKind,
  type HookName,
  type JobField,
  type JournalledPhase,
  type PhaseContract,
} from './core/contract.js';
export type {
  Assessment,
  Defer,
  Identity,
  Job,
  JobData,
  JobFields,
  JobRecord,
  LogFields,
  LogLevel,
  LogRecord,
  Logger,
  Outcome,
  OutcomeKind,
  PhaseName,
  PluginContext,
  PluginDefinition,
  PluginSpec,
  ProgressReport,
  RootContext,
  RootInfo,
  Layout,
  Skip,
  StepOptions,
  StepRecord,
  StepWhen,
  Survey,
} from './core/types.js';
export {
  checkBinary,
  commandFailure,
  type BinarySpec,
  type CheckStatus,
  type DoctorCheck,
  type DoctorContext,
  type HistoryEntry,
  type HistoryField,
} from './core/reports.js';
export { didYouMean } from './core/errors.js';
export {
  RUN_STATES,
  RUN_EVENTS,
  FINAL_RUN_STATES,
  FINAL_RUNS_KEPT_DAYS,
  type RunState,
  type RunEventName,
  type RunEvent,
  type RunFact,
  type RunRecord,
  type Runs,
} from './core/runs.js';

// ---- errors, names in messages, logging -------------------------------------------------------------
/** RefusedError: leave this directory alone (exit 2); TransientError: try again later; BusyError: someone else is on it. */
export {
  RefusedError,
  RootGoneError,
  RootClaimedError,
  isPermanentRefusal,
  TransientError,
  ConfigError,
  BusyError,
  DamagedStateError,
  AdvisedError,
  oneLine,
  quoteName,
} from './core/errors.js';
export { createLogger, oneLineText, stderrIsJournal, journalIsStderr, inJournal, logToStderr, type LogSink } from './core/logger.js';
/** This program's version (its package.json's), e.g. for records a plugin leaves behind. */
export { ownVersion } from './core/version.js';

// ---- running commands: an argument array, never a shell string --------------------------------------
export { run, CommandError, type RunOptions, type RunResult } from './core/exec.js';
export { retry, type RetryOptions } from './core/retry.js';

// ---- helper places of a job, in the root-only holding directory --------------------------------------
export {
  HELPER_PREFIX,
  HOLDING_NAME,
  assertRootMode,
  ensureHoldingDir,
  helperPath,
  holdingDir,
  isHelperName,
  jobPaths,
  rootLevelHelperPath,
  rootModeProblem,
  type JobPaths,
} from './core/places.js';
export { originalPlace, type OriginalPlace, type OriginalOf } from './core/original.js';
/** Runs below the root (a root's layout): the levels above a run checked right before a move or a mount. */
export { assertLevels, levelProblem, runComponents } from './core/levels.js';
/** Throws unless a path is still the directory with a recorded identity (checked before every move). */
export { assertSameDirectory } from './core/identity.js';

// ---- durable state: atomic files, kernel locks --------------------------------------------------------
export { writeFileAtomic, writeTempFile, backupFile, fsyncDir, isErrno, type TempFile } from './core/fsutil.js';
export { acquireLock, isLocked, type Lock, type LockOptions } from './core/lock.js';

// ---- trees read and changed through directory descriptors (never by path) ---------------------------
export {
  DirRef,
  TreeChangedError,
  IdentityError,
  NotADirectoryError,
  CrossDeviceError,
  UnsupportedEntryError,
  UnverifiedEntriesError,
  DestinationChangedError,
  VerifiedSet,
  at,
  copyEntry,
  displayPath,
  ensureDir,
  isZfsControlDir,
  listNames,
  relFromBuffer,
  relToBuffer,
  joinRel,
  splitRel,
  parentOf,
  nameOf,
  openChild,
  openDir,
  removeTree,
  setMetadata,
  statAt,
  treeDigest,
  walk,
  walkDirs,
  walkPair,
  type CopyOptions,
  type DirVisitor,
  type EntryInfo,
  type EntryType,
  type PairVisit,
  type RemoveOptions,
  type WalkOptions,
  type WalkPairOptions,
  type WalkResult,
} from './util/safefs/index.js';

// ---- who holds a tree (any mount namespace, by device and inode), what is mounted below it ---------
export { InodeIndex } from './util/inodes.js';
export { holdersOf, describeHolders, treeOf, type Holder, type HoldersOptions, type HeldTree } from './util/holders.js';
export { mountsBelow } from './util/proc.js';
/** At most n async tasks at once (`run`), or a list through at most n workers (`forEach`). */
export { Limiter } from './util/limit.js';
export { waitQuiet, type QuietLook, type QuietOptions, type QuietResult } from './util/quiet.js';
export { DirectoryWatches, MAX_WATCHES, WatchBudget, watchBudget } from './util/watches.js';
