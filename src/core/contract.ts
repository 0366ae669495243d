/**
 * The contract of each hook, in one table (after semantic-release's lib/definitions/plugins.js).
 * The hooks are created from it (src/core/hooks.ts), in its order; every list of hook or phase
 * names derives from it; the engine reads it to decide what runs in a dry run and checks what
 * taps return against it; the loader refuses a config in which no plugin taps a required hook.
 * test/unit/contract.test.ts fails when anything disagrees with it.
 *
 * This module imports nothing: everything else reads it.
 */

/** The tapable class a hook is made of. */
export type HookKind =
  /** AsyncSeriesHook: every tap runs, in order; what they return is ignored. */
  | 'series'
  /** AsyncSeriesBailHook: taps run in order until one returns something other than undefined. */
  | 'bail'
  /** AsyncSeriesWaterfallHook: each tap receives (and may return a replacement for) the first argument. */
  | 'waterfall'
  /** SyncHook: synchronous taps only. */
  | 'sync';

/**
 * The job fields of the cross-plugin contract (JobRecord's top-level fields that plugins record
 * with job.setJournalled()). `identity` is recorded by the engine when the job starts; every other one by
 * the one phase whose `sets` names it (`copied`: the copy plugin in the cleanup, read by the
 * filesystem plugin). Anything else a plugin keeps goes in its own namespace (job.data()).
 */
export const JOB_FIELDS = ['identity', 'filesystem', 'staging', 'aside', 'copied'] as const;

export type JobField = (typeof JOB_FIELDS)[number];

/** A job phase: a hook the engine runs once per job, in table order. */
export interface PhaseContract {
  /**
   * Entered through the journal (job.enter) before its taps run: it may change something, and a
   * failure in it is rolled back (before the commit) or left for recovery (after it). `filter`
   * and `wait` are not: they only decide, and nothing is journalled until they have passed.
   */
  readonly journalled: boolean;
  /**
   * Run again, in order, by recovery for a job past its commit point: the phase that holds the
   * commit point and every phase after it. Their taps are idempotent.
   */
  readonly afterCommit: boolean;
  /**
   * May be left to a later run (`handle --no-wait`): the job is committed and published by then,
   * and recovery runs it like any phase after the commit.
   */
  readonly deferrable?: boolean;
  /**
   * The job fields (JOB_FIELDS) the phase's taps record with job.setJournalled() for the phases after it
   * and for recovery. Checked: job.setJournalled() of a field in any other phase (or in a rollback) throws
   * a ContractError naming the plugin.
   */
  readonly sets?: readonly JobField[];
}

export interface HookContract {
  readonly kind: HookKind;
  /** The names of the arguments taps receive (tapable's argument names). */
  readonly args: readonly string[];
  /** Some loaded plugin must tap it, or the config is refused. */
  readonly required: boolean;
  /**
   * Runs in --dry-run. Taps of a hook that does must change nothing: they describe what they
   * would change via job.step (which then only logs). A hook that does not is skipped by the
   * engine in a dry run, which logs "would <description>" instead.
   */
  readonly dryRun: boolean;
  /** What a tap may return. */
  readonly returns: string;
  readonly description: string;
  /** Present for the job phases. */
  readonly phase?: PhaseContract;
  /**
   * For hooks whose taps return something: why a tap's return value breaks the contract, or
   * undefined when it keeps it. Checked on every tap (the error names the tap).
   */
  readonly check?: (value: unknown) => string | undefined;
  /**
   * Run by `doctor` (and check-config) or `history`, never by a job or a sweep: not among the
   * hooks a plugin is listed as tapping (list-plugins shows its part in the lifecycle).
   */
  readonly report?: boolean;
}

/** The status of a doctor check: fail makes doctor exit 1 (and check-config refuse the config). */
export const CHECK_STATUSES = ['ok', 'warn', 'info', 'fail'] as const;

/** Keys a history field may not have: history's own, beside which the fields are shown. */
export const HISTORY_KEYS = ['rootdir', 'dataset', 'mountpoint', 'converted'] as const;

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** undefined, or an object whose `key` is a non-empty string. */
const reason =
  (key: string) =>
  (value: unknown): string | undefined =>
    value === undefined || (isObject(value) && typeof value[key] === 'string' && value[key] !== '')
      ? undefined
      : `expected undefined or { ${key}: a non-empty string }`;

function checkAssessment(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const expected = 'expected undefined or { committed: boolean, nothingLeft?: boolean, fields?: object }';
  if (!isObject(value) || typeof value.committed !== 'boolean') return expected;
  if (value.nothingLeft !== undefined && typeof value.nothingLeft !== 'boolean') return expected;
  if (value.fields !== undefined && !isObject(value.fields)) return expected;
  return undefined;
}

function checkDefer(value: unknown): string | undefined {
  const plain = reason('defer')(value);
  if (plain !== undefined || value === undefined) return plain;
  const v = value as Record<string, unknown>;
  if (v.waiting !== undefined && v.waiting !== true) return 'expected waiting: true or no waiting';
  if (v.recheckSeconds !== undefined && !(typeof v.recheckSeconds === 'number' && v.recheckSeconds > 0))
    return 'expected recheckSeconds: a positive number';
  return undefined;
}

const isText = (value: unknown): value is string => typeof value === 'string' && value !== '';
const optionalString = (value: unknown): boolean => value === undefined || typeof value === 'string';
const optionalWords = (value: unknown): boolean =>
  value === undefined || (Array.isArray(value) && value.every((w) => typeof w === 'string'));

/** The checks, each { name, status, message, fix? } (undefined leaves the list as it was). */
function checkDoctor(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const ok = (c: unknown): boolean =>
    isObject(c) &&
    isText(c.name) &&
    (CHECK_STATUSES as readonly unknown[]).includes(c.status) &&
    typeof c.message === 'string' &&
    optionalWords(c.fix);
  return Array.isArray(value) && value.every(ok)
    ? undefined
    : `expected an array of { name, status: ${CHECK_STATUSES.join('|')}, message, fix?: string[] }`;
}

/** The conversions, each { filesystem, mountpoint, converted, fields: [{ key, value, text? }] } with keys of its own. */
function checkHistory(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  const field = (f: unknown): boolean =>
    isObject(f) &&
    isText(f.key) &&
    !(HISTORY_KEYS as readonly unknown[]).includes(f.key) &&
    (f.value === null || ['string', 'number'].includes(typeof f.value)) &&
    optionalString(f.text);
  const entry = (e: unknown): boolean =>
    isObject(e) &&
    isText(e.filesystem) &&
    typeof e.mountpoint === 'string' &&
    (e.converted === null || typeof e.converted === 'string') &&
    Array.isArray(e.fields) &&
    e.fields.every(field) &&
    new Set(e.fields.map((f: { key: string }) => f.key)).size === e.fields.length;
  return Array.isArray(value) && value.every(entry)
    ? undefined
    : `expected an array of { filesystem, mountpoint, converted: string|null, fields: [{ key (unique, not ${HISTORY_KEYS.join(', ')}), value: string|number|null, text? }] }`;
}

const table = {
  // ---- once per root, before any job ------------------------------------------------------------
  prepare: {
    kind: 'series',
    args: ['root'],
    required: false,
    dryRun: true,
    returns: 'nothing; throw to refuse the root',
    description: 'check the environment once per run',
  },
  survey: {
    kind: 'waterfall',
    args: ['survey', 'root'],
    required: false,
    dryRun: true,
    returns: 'the survey, completed',
    description: 'learn directories, filesystems and leftovers of a root',
  },

  // ---- one job: the phases, in the order they run ------------------------------------------------
  filter: {
    kind: 'bail',
    args: ['job'],
    required: false,
    dryRun: true,
    returns: '{ skip: reason } to leave the directory alone; throw to refuse it',
    description: 'decide whether a directory is converted',
    phase: { journalled: false, afterCommit: false },
    check: reason('skip'),
  },
  wait: {
    kind: 'bail',
    args: ['job'],
    required: false,
    dryRun: false,
    returns: '{ defer: reason, waiting?: true, recheckSeconds? } to try later (waiting: the run is not complete yet, not a deferral)',
    description: 'wait until the directory is quiet',
    phase: { journalled: false, afterCommit: false },
    check: checkDefer,
  },
  provision: {
    kind: 'series',
    args: ['job'],
    required: true,
    dryRun: true,
    returns: 'nothing',
    description: 'make the new, empty filesystem at a staging place',
    phase: { journalled: true, afterCommit: false, sets: ['filesystem', 'staging'] },
  },
  migrate: {
    kind: 'series',
    args: ['job'],
    required: true,
    dryRun: true,
    returns: 'nothing',
    description: 'copy the contents into the new filesystem',
    phase: { journalled: true, afterCommit: false },
  },
  swap: {
    kind: 'series',
    args: ['job'],
    required: true,
    dryRun: true,
    returns: 'nothing; call job.commit() just before the new filesystem is put at the original path',
    description: 'move the original aside, mount the new filesystem in its place, catch up, verify',
    phase: { journalled: true, afterCommit: true, sets: ['aside'] },
  },
  publish: {
    kind: 'series',
    args: ['job'],
    required: false,
    dryRun: true,
    returns: 'nothing',
    description: 'make the new filesystem known (exports, notifications) as soon as it is live',
    phase: { journalled: true, afterCommit: true },
  },
  // Published at the commit, before the cleanup: the data at the path is in the new filesystem
  // from the swap on, and clients of the root's export cannot see into it until it is exported.
  // The cleanup's grace period is waiting, not work (job.waiting): it holds no work slot.
  cleanup: {
    kind: 'series',
    args: ['job'],
    required: false,
    dryRun: true,
    returns: 'nothing',
    description: 'after a grace period and a last verification, remove the original',
    phase: { journalled: true, afterCommit: true, deferrable: true, sets: ['copied'] },
  },
  step: {
    kind: 'series',
    args: ['job', 'step', 'when'],
    required: false,
    dryRun: false,
    returns: 'nothing; throw to fail the step (the journal already says it started)',
    description: 'hear each step of a phase before it runs, when it ends and after it is done',
  },

  // ---- failure path and recovery -----------------------------------------------------------------
  // Not in a dry run: nothing was changed, so there is nothing to undo (and rollback taps act on
  // what is on disk, which in a dry run may belong to a real interrupted job).
  rollback: {
    kind: 'series',
    args: ['job', 'error'],
    required: false,
    dryRun: false,
    returns: 'nothing; must be idempotent and judge from what is on disk',
    description: 'undo an uncommitted job',
  },
  assess: {
    kind: 'bail',
    args: ['job'],
    required: false,
    dryRun: true,
    returns: '{ committed, nothingLeft?, fields? } for an interrupted job',
    description: 'recovery: say what an interrupted job left',
    check: checkAssessment,
  },

  // ---- after a job, and after a sweep ------------------------------------------------------------
  outcome: {
    kind: 'series',
    args: ['job', 'outcome'],
    required: false,
    dryRun: true,
    returns: 'nothing',
    description: 'hear how a job ended',
  },
  sync: {
    kind: 'series',
    args: ['root', 'survey'],
    required: false,
    dryRun: true,
    returns: 'nothing',
    description: 'make root-wide published state match the survey (and look at the runs still expected to change)',
  },
  // A run's events (src/core/runs.ts), each told once, after it is recorded; a failing tap is
  // logged and never fails a job (a receiver that must not miss one keeps its own retries).
  run: {
    kind: 'series',
    args: ['event', 'root'],
    required: false,
    dryRun: false,
    returns: 'nothing; a failure is logged, never fails the job',
    description: "hear a run's events: detected, complete, aborted, stalled, converted",
  },

  // ---- reports: doctor and history (not the lifecycle: run by those commands alone) ----------------
  doctor: {
    kind: 'waterfall',
    args: ['checks', 'doctor'],
    required: false,
    dryRun: true,
    report: true,
    returns: "the checks, with this plugin's appended",
    description: 'check, for doctor and check-config, what the plugin needs of the machine and the root',
    check: checkDoctor,
  },
  history: {
    kind: 'waterfall',
    args: ['entries', 'root'],
    required: false,
    dryRun: true,
    report: true,
    returns: "the conversions, with this plugin's appended or its fields added to each",
    description: "list, for history, the root's finished conversions",
    check: checkHistory,
  },

  // ---- everywhere --------------------------------------------------------------------------------
  log: {
    kind: 'sync',
    args: ['record'],
    required: false,
    dryRun: true,
    returns: 'nothing (synchronous)',
    description: 'receive every log record',
  },
  close: {
    kind: 'series',
    args: [],
    required: false,
    dryRun: true,
    returns: 'nothing',
    description: 'flush and close before the process exits',
  },
} as const satisfies Record<string, HookContract>;

/** The table's exact type (literal kinds and argument names), for compile-time checks. */
export type ContractTable = typeof table;

export type HookName = keyof typeof table;

/** A job phase: a hook with a `phase` entry in the table. */
export type PhaseName = { [K in HookName]: (typeof table)[K] extends { readonly phase: PhaseContract } ? K : never }[HookName];

/** A phase entered through the journal (which may change something). */
export type JournalledPhase = {
  [K in HookName]: (typeof table)[K] extends { readonly phase: { readonly journalled: true } } ? K : never;
}[HookName];

export const CONTRACT: Readonly<Record<HookName, HookContract>> = table;

/** Every hook, in the order of the table (the lifecycle's), for listings and loading. */
export const HOOK_ORDER: readonly HookName[] = Object.keys(table) as HookName[];

/** The job phases, in the order they run. */
export const PHASE_ORDER: readonly PhaseName[] = HOOK_ORDER.filter((h): h is PhaseName => CONTRACT[h].phase !== undefined);

/** The phases entered through the journal, which may change something (fault-injection's `killAt` phases). */
export const JOURNALLED_PHASES: readonly JournalledPhase[] = PHASE_ORDER.filter((p): p is JournalledPhase => CONTRACT[p].phase!.journalled);

/** The phases recovery runs again, in order, for a job past its commit point. */
export const AFTER_COMMIT: readonly JournalledPhase[] = JOURNALLED_PHASES.filter((p) => CONTRACT[p].phase!.afterCommit);

/** The phases whose taps may record `field` with job.setJournalled() (none for `identity`: the engine records it). */
export function phasesSetting(field: JobField): PhaseName[] {
  return PHASE_ORDER.filter((p) => CONTRACT[p].phase!.sets?.includes(field) ?? false);
}

/**
 * How a job ends: the one outcome vocabulary (logs, reconcile, recover, status, metrics, notify's
 * `on`; docs/operating.md "Outcomes"). refused: for a reason only a change to the directory or the
 * config can lift (a permanent RefusedError); remembered, not retried until then (src/core/refusals.ts).
 * waiting: the run is not complete yet (a wait tap's { waiting: true }): looked at again, not a deferral.
 */
export const OUTCOME_KINDS = [
  'converted',
  'skipped',
  'waiting',
  'deferred',
  'failed',
  'refused',
  'busy',
  'recovered',
  'rolled-back',
] as const;

export type OutcomeKind = (typeof OUTCOME_KINDS)[number];

/**
 * Where plugins depend on one another within a phase, the order is stated here, by name (tapable
 * `stage`: lower runs first), never by a bare number in a plugin.
 *
 * swap     STAGE.commit   the filesystem plugin moves the original aside, records the commit point
 *                         and puts the new filesystem at the original path;
 *          STAGE.catchUp  then the copy plugin brings over what changed meanwhile and verifies.
 * cleanup  STAGE.retire   the copy plugin waits out the grace period, catches up, verifies and
 *                         only then removes the original;
 *          STAGE.finish   then the filesystem plugin finishes the new filesystem (limits such as
 *                         quota, which could make a catch-up fail, and its state).
 * wait     STAGE.completion  the completion plugin asks whether the run is complete before
 *                         quiet-wait's quiet window (a run not complete waits without one).
 * any      STAGE.first    before every other tap of the hook, STAGE.last after all of them
 *                         (fault-injection's drills before or after a whole phase).
 */
export const STAGE = {
  first: -100,
  completion: -10,
  commit: 0,
  catchUp: 10,
  retire: 0,
  finish: 10,
  last: 100,
} as const;
