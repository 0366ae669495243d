/**
 * The daemon's sweeper: at start and every `sweepIntervalSeconds`, for each root, queues every
 * plain directory (what the watcher missed, or what appeared while the daemon was down, and
 * jobs deferred or failed earlier), finishes or undoes interrupted jobs, and makes published
 * state (exports) match. One sweep at a time; a sweep asked for during one joins it.
 */
import { RootEngine, oneLine, type Slots } from '../core/index.js';

export interface SweeperOptions {
  /** The engines of the config in force now. */
  readonly engines: () => readonly RootEngine[];
  readonly enqueue: (rootdir: string, name: string) => void;
  /** The work slots recoveries run with (the queue's jobs use the same). */
  readonly slots: () => Slots;
  readonly signal: AbortSignal;
  readonly intervalSeconds: () => number;
  /** Told when a root's sweep ended (for the metrics' last-sweep timestamp). */
  readonly onSwept?: (rootdir: string) => void;
}

export class Sweeper {
  private current: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

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
        const survey = await engine.survey();
        if (!engine.context.dryRun) await engine.refusals.prune(survey.directories);
        // New directories first: they wait out their quiet period while interrupted jobs are finished.
        for (const name of RootEngine.candidates(survey)) this.options.enqueue(engine.context.rootdir, name);
        const recovered = await engine.recoverRoot(signal, survey, this.options.slots());
        const fresh = recovered.some((r) => r.outcome.kind !== 'busy') ? await engine.survey() : survey;
        // A rolled-back job's directory is a plain directory again.
        for (const name of RootEngine.candidates(fresh)) this.options.enqueue(engine.context.rootdir, name);
        if (!signal.aborted) await engine.sync(fresh);
        this.options.onSwept?.(engine.context.rootdir);
      } catch (error) {
        engine.log.error(`sweep failed: ${oneLine(error)}; trying again in ${this.options.intervalSeconds()} s`);
      }
    }
  }
}
