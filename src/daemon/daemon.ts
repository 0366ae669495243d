/**
 * The daemon (`watch`): one object, three units and one stop for the process:
 *
 *  - the watcher (watcher.ts) reports each new directory of each root;
 *  - the queue (queue.ts) runs a job for each, up to `watch.maxJobs` at once;
 *  - the sweeper (sweeper.ts) queues what the watcher missed, finishes interrupted jobs and
 *    syncs exports, at start and every `watch.sweepIntervalSeconds`;
 *
 * and the status publisher (status-publisher.ts): <stateDir>/daemon.json, which `status` shows,
 * and the metrics' gauges. Waiting is not work: only the phases that do I/O hold one of
 * `watch.concurrency` work slots; the quiet period and the grace period hold none, so a burst of
 * directories converts in about one quiet period, the copies, and one grace period.
 *
 * `run(signal)` runs until the signal is aborted (commands/watch.ts: SIGTERM or SIGINT), then
 * stops cleanly: waits are abandoned (the directory is left as it is), copies before the commit
 * roll back, and jobs past it are left for recovery at the next start. `reload()` opens the
 * config again (a bad one keeps the old) and sweeps.
 */
import { setMaxListeners } from 'node:events';
import { lstat } from 'node:fs/promises';
import { App, type GlobalOptions } from '../app.js';
import { Slots, oneLine, ownerOf, type Config, type Logger } from '../core/index.js';
import { JobQueue, type QueueItem } from './queue.js';
import { RootWatcher } from './watcher.js';
import { Sweeper, runItem } from './sweeper.js';
import { StatusPublisher } from './status-publisher.js';

/** Retries of a failed job before it is left to the sweeps, and the first one's delay. */
const RETRIES = 4;
const RETRY_BASE_MS = 15_000;

/** A wait tap's recheck as a timer's delay: Node runs a timer of more than 2^31-1 ms at once (a warning, then a look every ms). */
export const recheckDelayMs = (seconds: number): number => Math.min(seconds * 1000, 2 ** 31 - 1);

const slotsOf = ({ concurrency, concurrencyPerOwner }: Config['watch']): Slots => new Slots(concurrency, concurrencyPerOwner);

export class Daemon {
  /** The daemon's own stop: aborted when run()'s signal is; every job and wait listens on it. */
  private readonly stop = new AbortController();
  private slots: Slots;
  private readonly retries = new Map<string, { attempts: number; timer?: NodeJS.Timeout }>();
  private readonly rechecks = new Map<string, NodeJS.Timeout>();
  private readonly queue: JobQueue;
  private readonly watcher: RootWatcher;
  private readonly sweeper: Sweeper;
  private readonly status: StatusPublisher;
  private reloading: Promise<void> = Promise.resolve();

  private constructor(
    private app: App,
    private readonly options: GlobalOptions,
  ) {
    // Every job in flight (up to watch.maxJobs) and its waits listen on this one signal: no warning at 11.
    setMaxListeners(0, this.stop.signal);
    this.slots = slotsOf(app.config.watch);
    const signal = this.stop.signal;
    const watch = (): Config['watch'] => this.app.config.watch;
    this.queue = new JobQueue({
      maxJobs: () => watch().maxJobs,
      maxJobsPerOwner: () => watch().maxJobsPerOwner,
      run: (item) => this.runJob(item),
      signal,
    });
    this.watcher = new RootWatcher((rootdir, name) => this.enqueue(rootdir, name));
    this.sweeper = new Sweeper({
      engines: () => this.app.engines,
      enqueue: (item) => void this.queue.add(item.rootdir, item.name, item),
      signal,
      intervalSeconds: () => watch().sweepIntervalSeconds,
      onSwept: (rootdir) => void this.status.swept(rootdir),
    });
    this.status = new StatusPublisher({
      signal,
      config: () => this.app.config,
      log: () => this.log(),
      busy: () => this.queue.running.length > 0,
      snapshot: () => ({
        slots: { busy: this.slots.busy, size: this.slots.size, queued: this.slots.queued },
        maxJobs: watch().maxJobs,
        queued: this.queue.queued.map(({ rootdir, name }) => ({ rootdir, name })),
        active: this.app.engines.flatMap((e) => e.active().map((a) => ({ rootdir: e.context.rootdir, ...a }))),
      }),
    });
    this.queue.onChange(() => this.status.publish());
  }

  /** Opens the config, watches its roots and starts the periodic sweep; run() does the first sweep. */
  static async start(options: GlobalOptions): Promise<Daemon> {
    const daemon = new Daemon(await App.open(options), options);
    await daemon.watchRoots();
    const { concurrency, concurrencyPerOwner, maxJobs, maxJobsPerOwner, sweepIntervalSeconds } = daemon.app.config.watch;
    daemon
      .log()
      .notice(
        `watching ${daemon.rootdirs()} (concurrency ${concurrency}, up to ${maxJobs} jobs waiting or working; per owner ${concurrencyPerOwner} working, ${maxJobsPerOwner} in flight; sweep every ${sweepIntervalSeconds} s)`,
      );
    daemon.sweeper.start();
    daemon.status.publish();
    return daemon;
  }

  /** Sweeps once (what appeared while it was down), then runs until `signal` is aborted and the stop is done. Returns the exit code. */
  async run(signal: AbortSignal): Promise<number> {
    const stopped = new Promise<void>((resolve) => {
      const onAbort = (): void => void this.shutdown().then(resolve);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
    await this.sweeper.sweep();
    await stopped;
    return 0;
  }

  /** What is said when the stop is asked for (by `signal`). */
  stopping(signal: string): void {
    this.log().notice(`${signal}: stopping; ${this.queue.running.length} running job(s) finish, roll back or are left for recovery`);
  }

  /** Opens the config again (jobs already running finish with the old one), then sweeps. */
  reload(why: string): Promise<void> {
    const next = this.reloading.then(() => this.reopen(why));
    this.reloading = next.catch(() => undefined);
    return next.then(() => this.sweeper.sweep());
  }

  private log(): Logger {
    return this.app.engines[0]!.log;
  }

  private rootdirs(): string {
    return this.app.engines.map((e) => e.context.rootdir).join(', ');
  }

  private async reopen(why: string): Promise<void> {
    if (this.stop.signal.aborted) return;
    let fresh: App;
    try {
      fresh = await App.open(this.options);
    } catch (error) {
      this.log().error(`configuration not reloaded (${why}), keeping the old one: ${oneLine(error)}`);
      return;
    }
    const old = this.app;
    this.app = fresh;
    const { concurrency, concurrencyPerOwner } = fresh.config.watch;
    if (concurrency !== this.slots.size || concurrencyPerOwner !== this.slots.perOwner) this.slots = slotsOf(fresh.config.watch);
    try {
      await this.watchRoots();
    } catch (error) {
      this.log().error(`watching after the reload failed: ${oneLine(error)}; the periodic sweep still runs`);
    }
    this.sweeper.start();
    this.log().notice(`configuration reloaded (${why}): watching ${this.rootdirs()}`);
    // Old engines stay open for the jobs that still run on them.
    void this.queue.drain().then(() => old.close());
  }

  /** The stop: nothing new starts; running jobs finish, roll back or are left for recovery. */
  private async shutdown(): Promise<void> {
    this.stop.abort();
    this.sweeper.stop();
    this.status.halt();
    for (const r of this.retries.values()) clearTimeout(r.timer);
    for (const timer of this.rechecks.values()) clearTimeout(timer);
    this.queue.clear();
    await this.watcher.close();
    await this.reloading;
    await this.sweeper.idle();
    await this.queue.drain();
    await this.status.close();
    this.log().notice('stopped');
    await this.app.close();
  }

  private watchRoots(): Promise<void> {
    return this.watcher.watch(
      this.app.engines.map((engine) => ({
        rootdir: engine.context.rootdir,
        depth: engine.context.layout?.depth ?? 1,
        onError: (error: unknown) => engine.log.error(`watching failed: ${oneLine(error)}; the periodic sweep still runs`),
      })),
    );
  }

  /** Queues a directory the watcher saw, with its owner (for the fair turns). */
  private enqueue(rootdir: string, name: string): void {
    void ownerOf(rootdir, name).then((owner) => this.queue.add(rootdir, name, { owner }));
  }

  private async runJob(item: QueueItem): Promise<QueueItem | void> {
    const { rootdir, name } = item;
    // The engine of the config in force now (a reload may have replaced it), if the root is still configured.
    const engine = this.app.engines.find((e) => e.context.rootdir === rootdir);
    if (!engine) return;
    try {
      if (!item.recover && !(await stillThere(`${rootdir}/${name}`))) {
        engine.log.debug('gone before its turn; nothing to do', { dir: name });
        return;
      }
      const { outcome, after } = await runItem(engine, item, { signal: this.stop.signal, slots: this.slots });
      this.retryLater(item, outcome.kind === 'failed');
      if (outcome.recheckSeconds !== undefined && (outcome.kind === 'waiting' || outcome.kind === 'deferred'))
        this.recheck(item, outcome.recheckSeconds);
      else if (outcome.kind === 'deferred' && !this.stop.signal.aborted) {
        engine.log.info(`will be tried again at the next sweep (in at most ${this.app.config.watch.sweepIntervalSeconds} s)`, {
          dir: name,
        });
      }
      return after;
    } catch (error) {
      engine.log.error(`job failed unexpectedly: ${oneLine(error)}`, { dir: name });
    }
  }

  /**
   * A run that waits (for its completion, say) is looked at again when its wait tap asked: a
   * timer, no process and no lane meanwhile (the sweeps queue it too).
   */
  private recheck(item: QueueItem, seconds: number): void {
    if (this.stop.signal.aborted) return;
    const key = `${item.rootdir}\0${item.name}`;
    clearTimeout(this.rechecks.get(key));
    const timer = setTimeout(() => {
      this.rechecks.delete(key);
      this.queue.add(item.rootdir, item.name, item);
    }, recheckDelayMs(seconds));
    timer.unref();
    this.rechecks.set(key, timer);
  }

  /**
   * A failure that may pass (a busy dataset, a command that failed) is tried again with backoff:
   * 15 s, 30 s, 60 s, … (at most RETRIES times, then at the sweeps). Refusals are not failures.
   */
  private retryLater(item: QueueItem, failed: boolean): void {
    const { rootdir, name } = item;
    const key = `${rootdir}\0${name}`;
    const entry = this.retries.get(key) ?? { attempts: 0 };
    // A sweep or an event may have run it before its timer: the timer goes, or it would keep a
    // stopped daemon from exiting (up to 120 s).
    clearTimeout(entry.timer);
    if (!failed || this.stop.signal.aborted || entry.attempts >= RETRIES) {
      if (!failed) this.retries.delete(key);
      return;
    }
    const delay = RETRY_BASE_MS * 2 ** entry.attempts;
    entry.attempts += 1;
    entry.timer = setTimeout(() => this.queue.add(rootdir, name, item), delay);
    this.retries.set(key, entry);
    this.log().info(`will be tried again in ${delay / 1000} s (attempt ${entry.attempts + 1} of ${RETRIES + 1})`, { dir: name });
  }
}

async function stillThere(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}
