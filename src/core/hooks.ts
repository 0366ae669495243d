/**
 * The lifecycle, declared once. Every hook is here with its arguments, in the
 * order it runs. Plugins tap these by name; the core calls them and nothing else.
 */
import {
  AsyncSeriesBailHook,
  AsyncSeriesHook,
  AsyncSeriesWaterfallHook,
  SyncHook,
} from 'tapable';
import type {
  Assessment,
  Defer,
  Job,
  LogRecord,
  Outcome,
  PhaseName,
  RootContext,
  Skip,
  StepWhen,
  Survey,
} from './types.js';

export function createHooks() {
  return {
    // ---- once per root, before any job ----------------------------------------
    /** Check the environment (binaries, that rootdir is rootfs's mountpoint). Throw to refuse. */
    prepare: new AsyncSeriesHook<[RootContext]>(['root']),
    /** Learn the state of a root in a few calls: directories, filesystems, leftovers. */
    survey: new AsyncSeriesWaterfallHook<[Survey, RootContext]>(['survey', 'root']),

    // ---- one job, in lifecycle order ------------------------------------------
    /** Should this directory be converted? Return { skip } to leave it alone; throw to refuse it. */
    filter: new AsyncSeriesBailHook<[Job], Skip | undefined>(['job']),
    /** Wait until the directory is quiet. Return { defer } to try later. */
    wait: new AsyncSeriesBailHook<[Job], Defer | undefined>(['job']),
    /** Make the new, empty filesystem at a staging place. */
    provision: new AsyncSeriesHook<[Job]>(['job']),
    /** Copy the directory's contents into it. */
    migrate: new AsyncSeriesHook<[Job]>(['job']),
    /** Move the original aside, put the new filesystem at the original path, catch up, verify. */
    swap: new AsyncSeriesHook<[Job]>(['job']),
    /** After a grace period and a last verification, remove the original and the helpers. */
    cleanup: new AsyncSeriesHook<[Job]>(['job']),
    /** Make the new filesystem known (exports, notifications). */
    publish: new AsyncSeriesHook<[Job]>(['job']),
    /**
     * Around every step a phase runs through job.step(): called with the step's full name
     * ("swap/move-aside") once it is journalled as started ('before'), as soon as its action has
     * returned or thrown ('end'), and once it is journalled as done ('after'; not after a throw).
     * Not called in dry-run. For observers and fault-injection drills.
     */
    step: new AsyncSeriesHook<[Job, string, StepWhen]>(['job', 'step', 'when']),

    // ---- failure path and recovery --------------------------------------------
    /** Undo what was done before the commit, idempotently, from what is on disk. */
    rollback: new AsyncSeriesHook<[Job, Error]>(['job', 'error']),
    /** Recovery: say what an interrupted job left on disk. */
    assess: new AsyncSeriesBailHook<[Job], Assessment | undefined>(['job']),

    // ---- after a job, and after a sweep ----------------------------------------
    /** The job's outcome, whatever it was. */
    outcome: new AsyncSeriesHook<[Job, Outcome]>(['job', 'outcome']),
    /** Make root-wide published state match the survey (for example: exports of every filesystem). */
    sync: new AsyncSeriesHook<[RootContext, Survey]>(['root', 'survey']),

    // ---- everywhere -----------------------------------------------------------
    /** Every log record. */
    log: new SyncHook<[LogRecord]>(['record']),
    /** The process is about to exit: flush and close what the plugin opened. */
    close: new AsyncSeriesHook<[]>([]),
  } as const;
}

export type Hooks = ReturnType<typeof createHooks>;
export type HookName = keyof Hooks;

/** The hook names in the order they run, for listings. */
export const HOOK_ORDER: readonly HookName[] = [
  'prepare', 'survey', 'filter', 'wait', 'provision', 'migrate', 'swap', 'cleanup', 'publish', 'step',
  'rollback', 'assess', 'outcome', 'sync', 'log', 'close',
];

/** The seven job phases, in order. */
export const PHASE_ORDER: readonly PhaseName[] = [
  'filter', 'wait', 'provision', 'migrate', 'swap', 'cleanup', 'publish',
];
