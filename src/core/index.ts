export * from './types.js';
export { createHooks, ContractError, type Hooks } from './hooks.js';
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
  type JobField,
  type HookKind,
  type HookName,
  type JournalledPhase,
  type PhaseContract,
} from './contract.js';
export {
  RefusedError,
  RootGoneError,
  RootClaimedError,
  isPermanentRefusal,
  TransientError,
  ConfigError,
  BusyError,
  AdvisedError,
  didYouMean,
  oneLine,
  quoteName,
} from './errors.js';
export { originalPlace, type OriginalPlace, type OriginalOf } from './original.js';
export { run, CommandError, type RunOptions, type RunResult } from './exec.js';
export { retry, type RetryOptions } from './retry.js';
export { writeFileAtomic, writeTempFile, backupFile, fsyncDir, isErrno, type TempFile } from './fsutil.js';
export { assertSameDirectory } from './identity.js';
export { RootEngine, LockLostError, ownerOf, type ActiveJob, type RecoveryResult, type HandleOptions } from './engine.js';
export { Slots, SlotHold, OwnerRing, UNKNOWN_OWNER } from './slots.js';
export { ownVersion } from './version.js';
export { loadPlugins, builtinNames, type LoadedPlugin, type PluginSource } from './loader.js';
export { DEFAULT_STATE_DIR, loadConfig, validateConfig, type Config, type RootConfig } from './config.js';
export { Journal, jobId } from './journal.js';
export {
  RunBook,
  runBook,
  readRuns,
  readRun,
  runFile,
  runsDir,
  advance,
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
} from './runs.js';
export { setStderrOverlay, type StderrOverlay } from './logger.js';
export { routeProcessWarnings, setWarningLog, processWarningCounts } from './logger.js';
export {
  createLogger,
  stderrSink,
  oneLineText,
  stderrIsJournal,
  journalIsStderr,
  inJournal,
  stderrLine,
  localTimestamp,
  humanTime,
  logToStderr,
  writeStderr,
  writeStdout,
  ignoreBrokenPipes,
  JOURNAL_PRIORITY,
  type LogSink,
} from './logger.js';
export { definePlugin } from './plugin.js';
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
} from './places.js';
export { acquireLock, isLocked, type Lock, type LockOptions } from './lock.js';
export { newProgress, type JobObserver, type JobProgress, type ProgressReport } from './progress.js';
