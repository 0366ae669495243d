/**
 * The daemon's sweeper: at start and every `sweepIntervalSeconds`, for each root, queues every
 * plain directory (what the watcher missed, or what appeared while the daemon was down, and
 * jobs deferred or failed earlier) and every interrupted job, and makes published state
 * (exports) match. One sweep at a time; a sweep asked for during one joins it.
 *
 * Interrupted jobs are finished beside new conversions, not before them: each is a job of the
 * queue like any other (its lane, its owner's turn), so an original held for its whole grace
 * period keeps one lane of its owner's for that long, never the sweep nor anyone else's turn.
 */
import {
  FINAL_RUN_STATES,
  FINAL_RUNS_KEPT_DAYS,
  OwnerRing,
  RootEngine,
  RootGoneError,
  oneLine,
  ownerOf,
  type Outcome,
  type RunRecord,
  type Runs,
  type Slots,
  type Survey,
} from '../core/index.js';
import type { QueueItem } from './queue.js';

/**
 * Whether a sweep forgets a run: its directory and its filesystem are both gone (for a run below
 * the root's first level, the first level's), or it is complete or aborted for longer than
 * FINAL_RUNS_KEPT_DAYS and converted (one still a plain directory keeps its run: forgotten, it
 * would be detected and told again). A run converting, with work left by an interrupted job,
 * or changed since the survey began (`surveyed`, epoch ms), is kept.
 */
export function forgettable(run: RunRecord, survey: Survey, surveyed: number): boolean {
  const since = Date.parse(run.since);
  if (run.state === 'converting' || !(since < surveyed)) return false;
  const top = run.name.split('/')[0]!;
  if (!survey.directories.has(top) && !survey.filesystems.has(top) && !survey.leftovers.has(top)) return true;
  if (top !== run.name || survey.leftovers.has(run.name) || !survey.filesystems.has(run.name)) return false;
  return FINAL_RUN_STATES.includes(run.state) && surveyed - since > FINAL_RUNS_KEPT_DAYS * 86_400_000;
}

/** The sweep's upkeep of the runs (not in a dry run): forgets those `forgettable` says. */
export async function pruneRuns(runs: Runs, survey: Survey, surveyed: number): Promise<void> {
  for (const run of await runs.list()) if (forgettable(run, survey, surveyed)) await runs.forget(run.name);
}

export interface SweeperOptions {
  /** The engines of the config in force now. */
  readonly engines: () => readonly RootEngine[];
  readonly enqueue: (item: QueueItem) => void;
  readonly signal: AbortSignal;
  readonly intervalSeconds: () => number;
  /** Told when a root's sweep ended (for the metrics' last-sweep timestamp). */
  readonly onSwept?: (rootdir: string) => void;
}

/**
 * What a sweep of one root queues: its interrupted jobs and its plain directories, each with its
 * owner, in the order the owners take turns.
 */
export async function sweepItems(engine: RootEngine, survey: Survey): Promise<QueueItem[]> {
  const { rootdir } = engine.context;
  const items: QueueItem[] = [
    ...(await engine.interrupted(survey)).map(({ name, fromJournal }) => ({
      rootdir,
      name,
      recover: fromJournal ? ('journal' as const) : ('disk' as const),
    })),
    ...RootEngine.candidates(survey).map((name) => ({ rootdir, name })),
  ];
  const ring = new OwnerRing<QueueItem>();
  for (const item of items) {
    const owner = await ownerOf(rootdir, item.name);
    ring.push(owner, { ...item, owner });
  }
  return ring.values();
}

/**
 * Runs one queued item: converts the directory, or finishes or undoes the interrupted job; a
 * job rolled back leaves a plain directory, queued again (`after`) to be converted.
 */
export async function runItem(
  engine: RootEngine,
  item: QueueItem,
  options: { signal: AbortSignal; slots: Slots },
): Promise<{ outcome: Outcome; after?: QueueItem }> {
  if (!item.recover) return { outcome: await engine.handle(item.name, options) };
  const outcome = await engine.recoverName(item.name, { ...options, fromJournal: item.recover === 'journal' });
  if (outcome.kind !== 'rolled-back' || options.signal.aborted) return { outcome };
  const plain = RootEngine.candidates(await engine.survey()).includes(item.name);
  return plain
    ? { outcome, after: { rootdir: item.rootdir, name: item.name, ...(item.owner !== undefined ? { owner: item.owner } : {}) } }
    : { outcome };
}

export class Sweeper {
  private current: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Roots found gone (reported once, until they are back). */
  private readonly gone = new Set<string>();

  constructor(private readonly options: SweeperOptions) {}

  /** Sweeps every root now (or joins the sweep under way). Never rejects. */
  sweep(): Promise<void> {
    this.current ??= this.sweepAll().finally(() => {
      this.current = undefined;
    });
    return this.current;
  }

  /** (Re)starts the periodic sweep with the interval in force now. */
  start(): void {
    this.stop();
    this.timer = setInterval(() => void this.sweep(), this.options.intervalSeconds() * 1000);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Resolves when the sweep under way, if any, has ended. */
  async idle(): Promise<void> {
    await this.current;
  }

  private async sweepAll(): Promise<void> {
    const { signal } = this.options;
    for (const engine of this.options.engines()) {
      if (signal.aborted) break;
      try {
        const surveyed = Date.now();
        const survey = await engine.survey();
        if (!engine.context.dryRun) {
          await engine.refusals.prune(survey.directories);
          await pruneRuns(engine.context.runs, survey, surveyed);
        }
        for (const item of await sweepItems(engine, survey)) this.options.enqueue(item);
        if (!signal.aborted) await engine.sync(survey);
        this.options.onSwept?.(engine.context.rootdir);
        if (this.gone.delete(engine.context.rootdir)) engine.log.notice('the root is back; its jobs are finished as usual');
      } catch (error) {
        if (error instanceof RootGoneError) {
          // Said once (and noted for status), not at every sweep; the other roots go on.
          const { line } = await engine.goneReport(error).catch(() => ({ line: oneLine(error) }));
          const first = !this.gone.has(engine.context.rootdir);
          this.gone.add(engine.context.rootdir);
          if (first) engine.log.warn(`${line}; checked again at every sweep`);
          continue;
        }
        engine.log.error(`sweep failed: ${oneLine(error)}; trying again in ${this.options.intervalSeconds()} s`);
      }
    }
  }
}
