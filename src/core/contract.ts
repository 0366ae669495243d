/**
 * The contract of each hook, in one table (after semantic-release's
 * lib/definitions/plugins.js): whether some plugin must tap it, whether it runs
 * in dry-run, and what a tap may return.
 */
import type { HookName } from './hooks.js';

export interface HookContract {
  /** Some loaded plugin must tap it, or the config is refused. */
  readonly required: boolean;
  /** Runs in --dry-run (taps must then only describe what they would change, via job.step). */
  readonly dryRun: boolean;
  /** What a tap may return. */
  readonly returns: string;
  readonly description: string;
}

export const CONTRACT: Readonly<Record<HookName, HookContract>> = {
  prepare: { required: false, dryRun: true, returns: 'nothing; throw to refuse the root', description: 'check the environment once per run' },
  survey: { required: false, dryRun: true, returns: 'the survey, completed', description: 'learn directories, filesystems and leftovers of a root' },
  filter: { required: false, dryRun: true, returns: '{ skip: reason } to leave the directory alone; throw to refuse it', description: 'decide whether a directory is converted' },
  wait: { required: false, dryRun: false, returns: '{ defer: reason } to try later', description: 'wait until the directory is quiet' },
  provision: { required: true, dryRun: true, returns: 'nothing', description: 'make the new, empty filesystem at a staging place' },
  migrate: { required: true, dryRun: true, returns: 'nothing', description: 'copy the contents into the new filesystem' },
  swap: { required: true, dryRun: true, returns: 'nothing; call job.commit() once the new filesystem is live at the original path', description: 'move the original aside, mount the new filesystem in its place, catch up, verify' },
  cleanup: { required: false, dryRun: true, returns: 'nothing', description: 'after a grace period and a last verification, remove the original' },
  publish: { required: false, dryRun: true, returns: 'nothing', description: 'make the new filesystem known (exports, notifications)' },
  step: { required: false, dryRun: false, returns: 'nothing; throw to fail the step (the journal already says it started)', description: 'hear each step of a phase before it runs and after it is done' },
  rollback: { required: false, dryRun: true, returns: 'nothing; must be idempotent and judge from what is on disk', description: 'undo an uncommitted job' },
  assess: { required: false, dryRun: true, returns: '{ committed, nothingLeft?, fields? } for an interrupted job', description: 'recovery: say what an interrupted job left' },
  outcome: { required: false, dryRun: true, returns: 'nothing', description: 'hear how a job ended' },
  sync: { required: false, dryRun: true, returns: 'nothing', description: 'make root-wide published state match the survey' },
  close: { required: false, dryRun: true, returns: 'nothing', description: 'flush and close before the process exits' },
  log: { required: false, dryRun: true, returns: 'nothing (synchronous)', description: 'receive every log record' },
};

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
 */
export const STAGE = {
  commit: 0,
  catchUp: 10,
  retire: 0,
  finish: 10,
} as const;
