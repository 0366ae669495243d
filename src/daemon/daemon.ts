/**
 * watch: the daemon, three units and one abort signal for the process:
 *
 *  - the watcher (src/daemon/watcher.ts) reports each new directory of each root;
 *  - the queue (src/daemon/queue.ts) runs a job for each, up to `watch.maxJobs` at once;
 *  - the sweeper (src/daemon/sweeper.ts) queues what the watcher missed, finishes interrupted
 *    jobs and syncs exports, at start and every `watch.sweepIntervalSeconds`.
 *
 * Waiting is not work: only the phases that do I/O hold one of `watch.concurrency` work slots;
 * the quiet period and the grace period hold none, so a burst of directories converts in about
 * one quiet period, the copies, and one grace period.
 *
 * SIGHUP reloads the config (a bad one keeps the old); SIGTERM stops cleanly: waits are
 * abandoned (the directory is left as it is), copies before the commit roll back, and jobs
 * past it are left for recovery at the next start. Exits 0. While it runs, what it does is in
 * <stateDir>/daemon.json, which `status` shows.
 */
import { setMaxListeners } from 'node:events';
import { lstat } from 'node:fs/promises';
import { App, type GlobalOptions } from '../app.js';
import { Slots, oneLine, ownerOf, type Logger } from '../core/index.js';
import { JobQueue, type QueueItem } from '../daemon/queue.js';
import { RootWatcher } from '../daemon/watcher.js';
import { Sweeper, runItem } from '../daemon/sweeper.js';
import { removeDaemonStatus, writeDaemonStatus } from '../daemon/status-file.js';
import type { MetricsTextfile } from '../metrics/textfile.js';

export async function watch(options: GlobalOptions): Promise<number> {
  let app = await App.open(options);
  const stop = new AbortController();
  // Every job in flight (up to watch.maxJobs) and its waits listen on this one signal: no warning at 11.
  setMaxListeners(0, stop.signal);
  const slotsOf = ({ concurrency, concurrencyPerOwner }: typeof app.config.watch): Slots => new Slots(concurrency, concurrencyPerOwner);
  let slots = slotsOf(app.config.watch);
  const log = (): Logger => app.engines[0]!.log;

  const runJob = async (item: QueueItem): Promise<QueueItem | void> => {
    const { rootdir, name } = item;
    // The engine of the config in force now (a reload may have replaced it), if the root is still configured.
    const engine = app.engines.find((e) => e.context.rootdir === rootdir);
    if (!engine) return;
    try {
      if (!item.recover && !(await stillThere(`${rootdir}/${name}`))) {
        engine.log.debug('gone before its turn; nothing to do', { dir: name });
        return;
      }
      const { outcome, after } = await runItem(engine, item, { signal: stop.signal, slots });
      retryLater(item, outcome.kind === 'failed');
      if (outcome.kind === 'deferred' && !stop.signal.aborted) {
        engine.log.info(`will be tried again at the next sweep (in at most ${app.config.watch.sweepIntervalSeconds} s)`, { dir: name });
      }
      return after;
    } catch (error) {
      engine.log.error(`job failed unexpectedly: ${oneLine(error)}`, { dir: name });
    }
  };
  // A failure that may pass (a busy dataset, a command that failed) is tried again with backoff:
  // 15 s, 30 s, 60 s, … (at most RETRIES times, then at the sweeps). Refusals are not failures.
  const retries = new Map<string, { attempts: number; timer?: NodeJS.Timeout }>();
  const retryLater = (item: QueueItem, failed: boolean): void => {
    const { rootdir, name } = item;
    const key = `${rootdir}\0${name}`;
    const entry = retries.get(key) ?? { attempts: 0 };
    if (!failed || stop.signal.aborted || entry.attempts >= RETRIES) {
      if (!failed) retries.delete(key);
      return;
    }
    const delay = RETRY_BASE_MS * 2 ** entry.attempts;
    entry.attempts += 1;
    entry.timer = setTimeout(() => queue.add(rootdir, name, item), delay);
    retries.set(key, entry);
    log().info(`will be tried again in ${delay / 1000} s (attempt ${entry.attempts + 1} of ${RETRIES + 1})`, { dir: name });
  };
  const queue = new JobQueue({ maxJobs: () => app.config.watch.maxJobs, maxJobsPerOwner: () => app.config.watch.maxJobsPerOwner, run: runJob, signal: stop.signal });
  /** Queues a directory the watcher saw, with its owner (for the fair turns). */
  const enqueue = (rootdir: string, name: string): void => {
    void ownerOf(rootdir, name).then((owner) => queue.add(rootdir, name, { owner }));
  };
  const watcher = new RootWatcher(enqueue);
  const sweeper = new Sweeper({
    engines: () => app.engines,
    enqueue: (item) => void queue.add(item.rootdir, item.name, item),
    signal: stop.signal,
    intervalSeconds: () => app.config.watch.sweepIntervalSeconds,
    onSwept: (rootdir) => void sweptGauge(rootdir),
  });
  const watchRoots = (): Promise<void> =>
    watcher.watch(
      app.engines.map((engine) => ({
        rootdir: engine.context.rootdir,
        onError: (error: unknown) => engine.log.error(`watching failed: ${oneLine(error)}; the periodic sweep still runs`),
      })),
    );

  // What the daemon does, for `status`: on every change of the queue (at most once a second),
  // every second while jobs are in flight (their phases and waits change without the queue),
  // and every HEARTBEAT_MS at least (its updatedAt is the daemon's heartbeat: status and the
  // metrics' heartbeat tell a dead daemon from it).
  const startedAt = new Date().toISOString();
  let writing: Promise<void> = Promise.resolve();
  let lastWrite = 0;
  let pendingWrite: NodeJS.Timeout | undefined;
  const publishStatus = (): void => {
    if (pendingWrite || stop.signal.aborted) return;
    pendingWrite = setTimeout(() => {
      pendingWrite = undefined;
      lastWrite = Date.now();
      const snapshot = {
        version: 1 as const,
        pid: process.pid,
        startedAt,
        updatedAt: new Date().toISOString(),
        slots: { busy: slots.busy, size: slots.size, queued: slots.queued },
        maxJobs: app.config.watch.maxJobs,
        queued: queue.queued.map(({ rootdir, name }) => ({ rootdir, name })),
        active: app.engines.flatMap((e) => e.active().map((a) => ({ rootdir: e.context.rootdir, ...a }))),
      };
      writing = writing
        .then(() => writeDaemonStatus(app.config.stateDir, snapshot))
        .catch((error: unknown) => log().debug(`status file not written: ${oneLine(error)}`))
        .then(() => daemonGauges({ queued: snapshot.queued.length, working: snapshot.active.filter((a) => a.working).length, waiting: snapshot.active.filter((a) => !a.working).length }));
    }, Math.max(0, 1000 - (Date.now() - lastWrite)));
  };
  // The Prometheus textfile's gauges (config `metrics`), written when they change.
  let metrics: { textfile: string; file: MetricsTextfile } | undefined;
  let metricsFailed = '';
  const daemonGauges = async (gauges: { queued: number; working: number; waiting: number } | undefined): Promise<void> => {
    const textfile = app.config.metrics?.textfile;
    if (textfile === undefined) return;
    try {
      if (metrics?.textfile !== textfile) metrics = { textfile, file: new (await import('../metrics/textfile.js')).MetricsTextfile(textfile, app.config.stateDir) };
      await metrics.file.daemon(gauges);
      metricsFailed = '';
    } catch (error) {
      // Said once per kind of failure, not at every change of the queue.
      if (oneLine(error) !== metricsFailed) log().warn(`metrics textfile ${textfile} not written: ${oneLine(error)}`);
      metricsFailed = oneLine(error);
    }
  };
  const sweptGauge = async (rootdir: string): Promise<void> => {
    const textfile = app.config.metrics?.textfile;
    if (textfile === undefined) return;
    const { MetricsTextfile } = await import('../metrics/textfile.js');
    await new MetricsTextfile(textfile, app.config.stateDir).swept(rootdir).catch((error: unknown) => log().debug(`metrics textfile not written: ${oneLine(error)}`));
  };
  queue.onChange(publishStatus);
  const heartbeat = setInterval(() => {
    if (queue.running.length > 0 || Date.now() - lastWrite >= HEARTBEAT_MS) publishStatus();
  }, 1000);

  let reloading: Promise<void> = Promise.resolve();
  /** Opens the config again; jobs already running finish with the old one. */
  function reload(why: string): Promise<void> {
    const next = reloading.then(async () => {
      if (stop.signal.aborted) return;
      let fresh: App;
      try {
        fresh = await App.open(options);
      } catch (error) {
        log().error(`configuration not reloaded (${why}), keeping the old one: ${oneLine(error)}`);
        return;
      }
      const old = app;
      app = fresh;
      if (app.config.watch.concurrency !== slots.size || app.config.watch.concurrencyPerOwner !== slots.perOwner) slots = slotsOf(app.config.watch);
      try {
        await watchRoots();
      } catch (error) {
        log().error(`watching after the reload failed: ${oneLine(error)}; the periodic sweep still runs`);
      }
      sweeper.start();
      log().notice(`configuration reloaded (${why}): watching ${app.engines.map((e) => e.context.rootdir).join(', ')}`);
      // Old engines stay open for the jobs that still run on them.
      void queue.drain().then(() => old.close());
    });
    reloading = next.catch(() => undefined);
    return next;
  }

  await watchRoots();
  const { concurrency, concurrencyPerOwner, maxJobs, maxJobsPerOwner, sweepIntervalSeconds } = app.config.watch;
  log().notice(
    `watching ${app.engines.map((e) => e.context.rootdir).join(', ')} (concurrency ${concurrency}, up to ${maxJobs} jobs waiting or working; per owner ${concurrencyPerOwner} working, ${maxJobsPerOwner} in flight; sweep every ${sweepIntervalSeconds} s)`,
  );
  sweeper.start();
  publishStatus();

  const done = new Promise<number>((resolve) => {
    const onHup = (): void => {
      if (stop.signal.aborted) return;
      void reload('SIGHUP').then(() => sweeper.sweep());
    };
    const onStop = (signal: string): void => {
      if (stop.signal.aborted) return;
      log().notice(`${signal}: stopping; ${queue.running.length} running job(s) finish, roll back or are left for recovery`);
      stop.abort();
      sweeper.stop();
      clearInterval(heartbeat);
      for (const r of retries.values()) clearTimeout(r.timer);
      if (pendingWrite) clearTimeout(pendingWrite);
      queue.clear();
      void (async () => {
        await watcher.close();
        await reloading;
        await sweeper.idle();
        await queue.drain();
        await writing;
        await removeDaemonStatus(app.config.stateDir, process.pid).catch(() => undefined);
        await daemonGauges(undefined);
        log().notice('stopped');
        await app.close();
        process.off('SIGHUP', onHup);
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        resolve(0);
      })();
    };
    const onTerm = (): void => onStop('SIGTERM');
    const onInt = (): void => onStop('SIGINT');
    process.on('SIGHUP', onHup);
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
  });
  // Signals are handled from here on; the first sweep catches what appeared while we were down.
  await sweeper.sweep();
  return done;
}

/** Retries of a failed job before it is left to the sweeps, and the first one's delay. */
const RETRIES = 4;
/** The daemon's status file is written at least this often: its updatedAt is a heartbeat. */
const HEARTBEAT_MS = 5000;
const RETRY_BASE_MS = 15_000;

async function stillThere(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}
