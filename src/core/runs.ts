/**
 * Runs: what the tool knows of each directory as one unit of an instrument's work, across jobs
 * and restarts: detected, waiting (for its quiet period or for the run to say it is complete),
 * stalled, converting, converted, complete, aborted, and since when.
 *
 * One JSON file per run, <stateDir>/runs/<job id>.json, written atomically (incron's runs, the
 * daemon and reconcile may write at once). Plugins and the engine state facts (`note`); the
 * state follows from them (`advance`, pure), and each event (run.detected, run.complete, …) is
 * recorded in the file before it is told to the `run` hook, so a restart never tells it again
 * (at least once, at most once per fact for one writer). Nothing is written in a dry run.
 */
import { mkdir, readFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno, writeFileAtomic } from './fsutil.js';
import { jobId } from './job-id.js';
import type { Hooks } from './hooks.js';
import type { RootContext } from './types.js';

/** Where a run is: the state `status` and the metrics show. */
export const RUN_STATES = ['waiting', 'stalled', 'converting', 'converted', 'complete', 'aborted'] as const;
export type RunState = (typeof RUN_STATES)[number];

/** What the `run` hook hears, each once per run (run.stalled: once per stall). */
export const RUN_EVENTS = ['run.detected', 'run.complete', 'run.aborted', 'run.stalled', 'run.converted'] as const;
export type RunEventName = (typeof RUN_EVENTS)[number];

/** The states in which nothing more is expected of a run. */
export const FINAL_RUN_STATES: readonly RunState[] = ['complete', 'aborted'];

/** A complete or aborted run's record is kept this long after its last change (then the sweeps forget it). */
export const FINAL_RUNS_KEPT_DAYS = 30;

export interface RunRecord {
  readonly version: 1;
  readonly rootdir: string;
  readonly name: string;
  readonly state: RunState;
  /** When it entered that state (ISO 8601, UTC). */
  readonly since: string;
  readonly detectedAt: string;
  /** The directory's inode when detected (its dev is not stable across a remount): another directory of the name is another run. */
  readonly ino?: number;
  /** The run said it is complete (complete) or was stopped or failed (aborted): when it said so. */
  readonly completion?: 'complete' | 'aborted';
  readonly completedAt?: string;
  readonly convertedAt?: string;
  /** The new filesystem's name, once converted. */
  readonly dataset?: string;
  /** When it was last seen written to before it stalled. */
  readonly stalledSince?: string | undefined;
  /** How completion is judged (the policy and its preset, for status), told by the plugin that judges it. */
  readonly policy?: string;
  /** One line: what it waits for, or what made it complete, stalled or aborted. */
  readonly note?: string;
  /** The events told so far. */
  readonly told: readonly RunEventName[];
}

/** A fact about a run, stated by the engine or a plugin. */
export type RunFact =
  /** The engine met the directory as a job (created: run.detected). */
  | { readonly kind: 'detected'; readonly ino?: number }
  /** Waiting: for its quiet period, for the run to complete; `note` says for what. */
  | { readonly kind: 'waiting'; readonly note: string; readonly policy?: string }
  /** The run says it is complete (`at`: when it said so, e.g. the marker's time). */
  | { readonly kind: 'complete'; readonly at: string; readonly note: string; readonly policy?: string }
  /** The run says it was stopped or failed: still converted (the data is the lab's), reported as such. */
  | { readonly kind: 'aborted'; readonly at: string; readonly note: string; readonly policy?: string }
  /** Neither complete nor written to since `since`, for longer than the site allows. */
  | { readonly kind: 'stalled'; readonly since: string; readonly note: string; readonly policy?: string }
  /** Written to again after it stalled. */
  | { readonly kind: 'active'; readonly note: string }
  | { readonly kind: 'converting' }
  /** The conversion ended without converting (rolled back, failed, deferred): waiting again. */
  | { readonly kind: 'unconverted'; readonly note: string }
  | { readonly kind: 'converted'; readonly dataset?: string };

/** One event, as the `run` hook and notify's receivers get it. */
export interface RunEvent {
  readonly event: RunEventName;
  readonly rootdir: string;
  readonly name: string;
  /** rootdir/name */
  readonly path: string;
  /** When it happened (ISO 8601, UTC). */
  readonly time: string;
  /** The run as it stands after the fact. */
  readonly run: RunRecord;
}

/** The runs of one root: what `job.root.runs` is. */
export interface Runs {
  /** The run of `name`, or undefined when none is known. */
  get(name: string): Promise<RunRecord | undefined>;
  /** Every run of the root known, by name. */
  list(): Promise<RunRecord[]>;
  /**
   * States a fact: the run's record is updated (made when it is new) and written before the
   * events it gives rise to are told to the `run` hook. Returns the record and whether its
   * state or note changed (for a plugin's log line). In a dry run nothing is written or told.
   */
  note(name: string, fact: RunFact): Promise<{ run: RunRecord; changed: boolean }>;
  /** Forgets a run (its directory and filesystem are gone). */
  forget(name: string): Promise<void>;
}

/** The state a run's completion and conversion give it. */
function settled(run: Pick<RunRecord, 'completion' | 'convertedAt' | 'stalledSince'>, converting: boolean): RunState {
  if (converting) return 'converting';
  if (run.completion !== undefined) return run.completion;
  if (run.stalledSince !== undefined) return 'stalled';
  return run.convertedAt !== undefined ? 'converted' : 'waiting';
}

/** The record after `fact` (pure): the new record and the events it gives rise to, in order. */
export function advance(
  known: RunRecord | undefined,
  fact: RunFact,
  where: { rootdir: string; name: string },
  now: Date,
): { run: RunRecord; events: RunEventName[] } {
  const time = now.toISOString();
  // Another directory of the name (the first removed or renamed away) before a conversion is another run.
  const replaced =
    fact.kind === 'detected' &&
    fact.ino !== undefined &&
    known?.ino !== undefined &&
    known.ino !== fact.ino &&
    known.convertedAt === undefined &&
    known.state !== 'converting';
  const old = replaced ? undefined : known;
  let run: RunRecord = old ?? { version: 1, ...where, state: 'waiting', since: time, detectedAt: time, told: [] };
  const events: RunEventName[] = old === undefined ? ['run.detected'] : [];
  const tell = (event: RunEventName): void => {
    if (!run.told.includes(event) && !events.includes(event)) events.push(event);
  };
  const policy = 'policy' in fact && fact.policy !== undefined ? { policy: fact.policy } : {};
  let converting = run.state === 'converting';
  switch (fact.kind) {
    case 'detected':
      if (fact.ino !== undefined) run = { ...run, ino: fact.ino };
      break;
    case 'waiting':
      run = { ...run, ...policy, note: fact.note };
      break;
    case 'complete':
    case 'aborted':
      if (run.completion === undefined) {
        run = { ...run, ...policy, completion: fact.kind, completedAt: fact.at, stalledSince: undefined, note: fact.note };
        tell(`run.${fact.kind}`);
      }
      break;
    case 'stalled':
      if (run.completion === undefined && run.stalledSince === undefined) {
        run = { ...run, ...policy, stalledSince: fact.since, note: fact.note };
        tell('run.stalled');
      }
      break;
    case 'active':
      if (run.stalledSince !== undefined) {
        run = { ...run, stalledSince: undefined, note: fact.note, told: run.told.filter((e) => e !== 'run.stalled') };
      }
      break;
    case 'converting':
      converting = true;
      break;
    case 'unconverted':
      converting = false;
      run = { ...run, note: fact.note };
      break;
    case 'converted':
      converting = false;
      run = { ...run, convertedAt: run.convertedAt ?? time, ...(fact.dataset !== undefined ? { dataset: fact.dataset } : {}) };
      tell('run.converted');
      break;
  }
  const state = settled(run, converting);
  run = { ...run, state, since: state === run.state && old !== undefined ? run.since : time, told: [...run.told, ...events] };
  return { run: JSON.parse(JSON.stringify(run)) as RunRecord, events };
}

/** A record read back (undefined: damaged, or of another root when `rootdir` is given). */
function parse(text: string, rootdir?: string): RunRecord | undefined {
  try {
    const value = JSON.parse(text) as RunRecord;
    return value.version === 1 &&
      typeof value.rootdir === 'string' &&
      (rootdir === undefined || value.rootdir === rootdir) &&
      typeof value.name === 'string' &&
      Array.isArray(value.told)
      ? value
      : undefined;
  } catch {
    return undefined;
  }
}

/** Where the runs are kept. */
export const runsDir = (stateDir: string): string => join(stateDir, 'runs');

/** How many run files are read at once (a root may know 10,000 runs: never as many descriptors). */
const READ_BATCH = 64;

/** Every run in <stateDir>/runs (of every root, or of `rootdir`), by name; damaged files left out. */
export async function readRuns(stateDir: string, rootdir?: string): Promise<RunRecord[]> {
  const dir = runsDir(stateDir);
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.json'));
  const runs: RunRecord[] = [];
  for (let i = 0; i < files.length; i += READ_BATCH) {
    const batch = files.slice(i, i + READ_BATCH);
    for (const run of await Promise.all(batch.map(async (f) => parse(await readFile(join(dir, f), 'utf8').catch(() => ''), rootdir))))
      if (run !== undefined) runs.push(run);
  }
  return runs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** One run's record from its file (undefined when missing or not a record of `rootdir`). */
export async function readRun(file: string, rootdir?: string): Promise<RunRecord | undefined> {
  return parse(await readFile(file, 'utf8').catch(() => ''), rootdir);
}

/** The file of a run (whether it exists or not). */
export const runFile = (stateDir: string, rootdir: string, name: string): string => join(runsDir(stateDir), `${jobId(rootdir, name)}.json`);

/** The runs of one root, in the stateDir (see the top of this file). */
export class RunBook implements Runs {
  readonly dir: string;

  constructor(
    private readonly stateDir: string,
    private readonly rootdir: string,
    private readonly options: { readonly dryRun: boolean; readonly tell: (event: RunEvent) => Promise<void> },
  ) {
    this.dir = runsDir(stateDir);
  }

  private file(name: string): string {
    return runFile(this.stateDir, this.rootdir, name);
  }

  async get(name: string): Promise<RunRecord | undefined> {
    const run = parse(await readFile(this.file(name), 'utf8').catch(() => ''), this.rootdir);
    return run?.name === name ? run : undefined;
  }

  async list(): Promise<RunRecord[]> {
    return readRuns(this.stateDir, this.rootdir);
  }

  async note(name: string, fact: RunFact): Promise<{ run: RunRecord; changed: boolean }> {
    const old = await this.get(name);
    const { run, events } = advance(old, fact, { rootdir: this.rootdir, name }, new Date());
    const changed = old === undefined || old.state !== run.state || old.note !== run.note;
    if (this.options.dryRun || (!changed && events.length === 0 && old !== undefined && sameRecord(old, run))) return { run, changed };
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await writeFileAtomic(this.file(name), `${JSON.stringify(run)}\n`, 0o600);
    const time = new Date().toISOString();
    for (const event of events) await this.options.tell({ event, rootdir: this.rootdir, name, path: join(this.rootdir, name), time, run });
    return { run, changed };
  }

  async forget(name: string): Promise<void> {
    if (this.options.dryRun) return;
    await unlink(this.file(name)).catch((error: unknown) => {
      if (!isErrno(error, 'ENOENT')) throw error;
    });
  }
}

const sameRecord = (a: RunRecord, b: RunRecord): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * The runs of a root whose events go to its hooks' `run` taps (a failing tap is logged, never
 * thrown: a receiver never fails a job).
 */
export function runBook(root: Omit<RootContext, 'runs'>, hooks: Pick<Hooks, 'run'>): RunBook {
  const book: RunBook = new RunBook(root.stateDir, root.rootdir, {
    dryRun: root.dryRun,
    tell: async (event) => {
      await hooks.run.promise(event, { ...root, runs: book }).catch((error: unknown) => {
        root.log.warn(`a run hook failed on ${event.event}: ${error instanceof Error ? error.message : String(error)}`, {
          dir: event.name,
        });
      });
    },
  });
  return book;
}
