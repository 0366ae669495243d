/**
 * The lifecycle, declared once. Every hook is here with its arguments, in the order it runs.
 * Plugins tap these by name; the core calls them and nothing else. What each hook is made of,
 * whether it runs in a dry run and what its taps may return is the contract (./contract.ts),
 * from which createHooks() makes them.
 */
import { AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, SyncHook } from 'tapable';
import { CONTRACT, HOOK_ORDER, type ContractTable, type HookContract, type HookName } from './contract.js';
import { ContractError } from './errors.js';
import type { Assessment, Defer, Job, LogRecord, Outcome, RootContext, Skip, StepWhen, Survey } from './types.js';
import type { DoctorCheck, DoctorContext, HistoryEntry } from './reports.js';
import type { RunEvent } from './runs.js';

export interface Hooks {
  // ---- once per root, before any job ----------------------------------------
  /** Check the environment (binaries, that rootdir is rootfs's mountpoint). Throw to refuse. */
  readonly prepare: AsyncSeriesHook<[RootContext]>;
  /** Learn the state of a root in a few calls: directories, filesystems, leftovers. */
  readonly survey: AsyncSeriesWaterfallHook<[Survey, RootContext]>;

  // ---- one job, in lifecycle order ------------------------------------------
  /** Should this directory be converted? Return { skip } to leave it alone; throw to refuse it. */
  readonly filter: AsyncSeriesBailHook<[Job], Skip | undefined>;
  /** Wait until the directory is quiet. Return { defer } to try later. */
  readonly wait: AsyncSeriesBailHook<[Job], Defer | undefined>;
  /** Make the new, empty filesystem at a staging place. */
  readonly provision: AsyncSeriesHook<[Job]>;
  /** Copy the directory's contents into it. */
  readonly migrate: AsyncSeriesHook<[Job]>;
  /** Move the original aside, put the new filesystem at the original path, catch up, verify. */
  readonly swap: AsyncSeriesHook<[Job]>;
  /** Make the new filesystem known (exports, notifications) as soon as it is live. */
  readonly publish: AsyncSeriesHook<[Job]>;
  /** After a grace period and a last verification, remove the original and the helpers. */
  readonly cleanup: AsyncSeriesHook<[Job]>;
  /**
   * Around every step a phase runs through job.step(): called with the step's full name
   * ("swap/move-aside") once it is journalled as started ('before'), as soon as its action has
   * returned or thrown ('end'), and once it is journalled as done ('after'; not after a throw).
   * Not called in dry-run. For observers and fault-injection drills.
   */
  readonly step: AsyncSeriesHook<[Job, string, StepWhen]>;

  // ---- failure path and recovery --------------------------------------------
  /** Undo what was done before the commit, idempotently, from what is on disk. */
  readonly rollback: AsyncSeriesHook<[Job, Error]>;
  /** Recovery: say what an interrupted job left on disk. */
  readonly assess: AsyncSeriesBailHook<[Job], Assessment | undefined>;

  // ---- after a job, and after a sweep ----------------------------------------
  /** The job's outcome, whatever it was. */
  readonly outcome: AsyncSeriesHook<[Job, Outcome]>;
  /** Make root-wide published state match the survey (for example: exports of every filesystem). */
  readonly sync: AsyncSeriesHook<[RootContext, Survey]>;
  /** A run's event (detected, complete, aborted, stalled, converted), once, after it is recorded. */
  readonly run: AsyncSeriesHook<[RunEvent, RootContext]>;

  // ---- reports: run by doctor (and check-config) and history alone -----------
  /** A plugin's checks of the machine and the root (src/core/reports.ts), appended to the list. */
  readonly doctor: AsyncSeriesWaterfallHook<[DoctorCheck[], DoctorContext]>;
  /** The root's finished conversions: a plugin appends those it knows, or adds its fields to each. */
  readonly history: AsyncSeriesWaterfallHook<[HistoryEntry[], RootContext]>;

  // ---- everywhere -----------------------------------------------------------
  /** Every log record. */
  readonly log: SyncHook<[LogRecord]>;
  /** The process is about to exit: flush and close what the plugin opened. */
  readonly close: AsyncSeriesHook<[]>;
}

/**
 * Checked when compiling: the interface above and the contract name the same hooks, each with as
 * many arguments as the contract names (the classes are checked by test/unit/contract.test.ts).
 */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
type AllTrue<T extends boolean> = false extends T ? false : true;
export type HooksMatchContract = Assert<
  AllTrue<
    | Same<keyof Hooks, HookName>
    | { [K in HookName]: Same<Parameters<Hooks[K]['promise']>['length'], ContractTable[K]['args']['length']> }[HookName]
  >
>;

/** The hooks of one root, made from the contract, in its order; frozen: a plugin taps them, never replaces one. */
export function createHooks(): Hooks {
  const hooks: Partial<Record<HookName, unknown>> = {};
  for (const name of HOOK_ORDER) hooks[name] = makeHook(name, CONTRACT[name]);
  return Object.freeze(hooks) as unknown as Hooks;
}

type AnyHook =
  AsyncSeriesHook<unknown[]> | AsyncSeriesBailHook<unknown[], unknown> | AsyncSeriesWaterfallHook<unknown[]> | SyncHook<unknown[]>;

function makeHook(name: HookName, contract: HookContract): AnyHook {
  // tapable types the names as a fixed-size tuple; their count is checked by test/unit/contract.test.ts.
  const args = [...contract.args] as never;
  const hook: AnyHook =
    contract.kind === 'bail'
      ? new AsyncSeriesBailHook<unknown[], unknown>(args, name)
      : contract.kind === 'waterfall'
        ? new AsyncSeriesWaterfallHook<unknown[]>(args, name)
        : contract.kind === 'sync'
          ? new SyncHook<unknown[]>(args, name)
          : new AsyncSeriesHook<unknown[]>(args, name);
  if (contract.check) checkReturns(hook, name, contract, contract.check);
  if (contract.args[0] === 'job') nameActingPlugin(hook);
  return hook;
}

/** Every tap's return value is checked as it returns, so a wrong shape names the tap (its plugin). */
function checkReturns(hook: AnyHook, name: HookName, contract: HookContract, check: NonNullable<HookContract['check']>): void {
  hook.intercept({
    register: (tap) => {
      const fn = tap.fn as (...a: unknown[]) => unknown;
      const verify = (value: unknown): unknown => {
        const problem = check(value);
        if (problem !== undefined)
          throw new ContractError(`plugin "${tap.name}": its ${name} tap returned ${describe(value)}; ${problem} (${contract.returns})`);
        return value;
      };
      if (tap.type === 'promise') return { ...tap, fn: (...a: unknown[]) => Promise.resolve(fn(...a)).then(verify) };
      if (tap.type === 'sync') return { ...tap, fn: (...a: unknown[]) => verify(fn(...a)) };
      // A callback tap: its callback is the last argument.
      return {
        ...tap,
        fn: (...a: unknown[]) => {
          const callback = a.pop() as (error?: unknown, result?: unknown) => void;
          fn(...a, (error?: unknown, result?: unknown) => {
            if (error) return callback(error);
            try {
              callback(null, verify(result));
            } catch (problem) {
              callback(problem);
            }
          });
        },
      };
    },
  });
}

/**
 * While a tap of a job hook runs, the job's logger names the tap (its plugin): job.log lines,
 * job.step's included, can be attributed. Restored when the tap returns (hooks run in series).
 */
function nameActingPlugin(hook: AnyHook): void {
  hook.intercept({
    register: (tap) => {
      const fn = tap.fn as (...a: unknown[]) => unknown;
      const enter = (job: Acting): (() => void) => {
        const previous = job.actingPlugin;
        job.actingPlugin = tap.name;
        return () => {
          job.actingPlugin = previous;
        };
      };
      if (tap.type === 'promise') {
        return {
          ...tap,
          fn: (...a: unknown[]) => {
            const leave = enter(a[0] as Acting);
            return Promise.resolve()
              .then(() => fn(...a))
              .finally(leave);
          },
        };
      }
      if (tap.type === 'sync') {
        return {
          ...tap,
          fn: (...a: unknown[]) => {
            const leave = enter(a[0] as Acting);
            try {
              return fn(...a);
            } finally {
              leave();
            }
          },
        };
      }
      return {
        ...tap,
        fn: (...a: unknown[]) => {
          const callback = a.pop() as (error?: unknown, result?: unknown) => void;
          const leave = enter(a[0] as Acting);
          try {
            fn(...a, (error?: unknown, result?: unknown) => {
              leave();
              callback(error, result);
            });
          } catch (error) {
            leave();
            throw error;
          }
        },
      };
    },
  });
}

/** A job while one of its hooks' taps runs: the tap's name, for its logger. */
interface Acting {
  actingPlugin?: string | undefined;
}

export { ContractError };

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value === 'string' ? JSON.stringify(value) : String(value);
  try {
    const text = JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return Object.prototype.toString.call(value);
  }
}
