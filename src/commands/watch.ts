/**
 * watch: the daemon. Watches every root (inotify, through chokidar, depth 0),
 * queues each new directory, runs jobs with the configured concurrency, sweeps
 * at start and periodically (so nothing made while it was down, or missed,
 * stays a plain directory; deferred and failed jobs are tried again there),
 * reloads the config on SIGHUP, and on SIGTERM stops cleanly: waits are
 * abandoned (the directory is left as it is), copies before the commit roll
 * back, and jobs past it are left for recovery at the next start. Exits 0.
 */
import { lstat } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { App, type GlobalOptions } from '../app.js';
import { RootEngine, isHelperName, oneLine, type Logger } from '../core/index.js';
import { recoverRoot } from './recover.js';

interface Item {
  readonly rootdir: string;
  readonly name: string;
  readonly key: string;
}

export async function watch(options: GlobalOptions): Promise<number> {
  let app = await App.open(options);
  const stop = new AbortController();
  /** Queued, not yet started; in order. */
  const pending: Item[] = [];
  const queued = new Set<string>();
  const running = new Map<string, Promise<void>>();
  let watchers: FSWatcher[] = [];
  let sweeping: Promise<void> | undefined;
  const log = (): Logger => app.engines[0]!.log;
  const engineFor = (rootdir: string): RootEngine | undefined => app.engines.find((e) => e.context.rootdir === rootdir);

  const pump = (): void => {
    while (!stop.signal.aborted && running.size < app.config.watch.concurrency && pending.length > 0) {
      const item = pending.shift()!;
      queued.delete(item.key);
      // The engine of the config in force now (a reload may have replaced it), if the root is still configured.
      const engine = engineFor(item.rootdir);
      if (!engine) continue;
      const task = stillThere(`${item.rootdir}/${item.name}`)
        .then(async (there) => {
          if (!there) {
            engine.log.debug('gone before its turn; nothing to do', { dir: item.name });
            return;
          }
          const outcome = await engine.handle(item.name, { signal: stop.signal });
          if (outcome.kind === 'deferred' && !stop.signal.aborted) {
            engine.log.info(`will be tried again at the next sweep (in at most ${app.config.watch.sweepIntervalSeconds} s)`, { dir: item.name });
          }
        })
        .catch((error: unknown) => engine.log.error(`job failed unexpectedly: ${oneLine(error)}`, { dir: item.name }))
        .finally(() => {
          running.delete(item.key);
          pump();
        });
      running.set(item.key, task);
    }
  };

  const enqueue = (rootdir: string, name: string): void => {
    const key = `${rootdir}\0${name}`;
    if (queued.has(key) || running.has(key) || stop.signal.aborted) return;
    queued.add(key);
    pending.push({ rootdir, name, key });
    pump();
  };

  const startWatching = async (): Promise<void> => {
    const old = watchers;
    watchers = [];
    await Promise.all(old.map((w) => w.close()));
    const fresh = app.engines.map((engine) => {
      const rootdir = engine.context.rootdir;
      const w = chokidar.watch(rootdir, { depth: 0, ignoreInitial: true, followSymlinks: false, persistent: true });
      w.on('addDir', (path: string) => {
        const name = basename(path);
        if (dirname(path) === rootdir && !isHelperName(name)) enqueue(rootdir, name);
      });
      w.on('error', (error: unknown) => engine.log.error(`watching failed: ${oneLine(error)}; the periodic sweep still runs`));
      return w;
    });
    watchers = fresh;
    await Promise.all(fresh.map((w) => new Promise<void>((resolve) => w.once('ready', () => resolve()))));
  };

  /** Recovers leftovers and queues every plain directory of every root; syncs exports. */
  const sweep = (): Promise<void> => {
    sweeping ??= (async () => {
      for (const engine of app.engines) {
        if (stop.signal.aborted) break;
        try {
          const survey = await engine.survey();
          const recovered = await recoverRoot(engine, stop.signal, survey);
          const fresh = recovered.some((r) => r.outcome.kind !== 'busy') ? await engine.survey() : survey;
          // New jobs run through the queue, with its concurrency.
          for (const name of RootEngine.candidates(fresh)) enqueue(engine.context.rootdir, name);
          if (!stop.signal.aborted) await engine.sync(fresh);
        } catch (error) {
          engine.log.error(`sweep failed: ${oneLine(error)}; trying again in ${app.config.watch.sweepIntervalSeconds} s`);
        }
      }
    })().finally(() => {
      sweeping = undefined;
    });
    return sweeping;
  };

  let timer: NodeJS.Timeout | undefined;
  const startTimer = (): void => {
    if (timer) clearInterval(timer);
    timer = setInterval(() => void sweep(), app.config.watch.sweepIntervalSeconds * 1000);
  };

  let reloading: Promise<void> = Promise.resolve();
  /** Opens the config again; jobs already running finish with the old one. */
  async function reload(why: string): Promise<void> {
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
      try {
        await startWatching();
      } catch (error) {
        log().error(`watching after the reload failed: ${oneLine(error)}; the periodic sweep still runs`);
      }
      startTimer();
      log().notice(`configuration reloaded (${why}): watching ${app.engines.map((e) => e.context.rootdir).join(', ')}`);
      // Old engines stay open for the jobs that still run on them.
      void Promise.all(running.values()).then(() => old.close());
    });
    reloading = next.catch(() => undefined);
    return next;
  }

  await startWatching();
  log().notice(`watching ${app.engines.map((e) => e.context.rootdir).join(', ')} (concurrency ${app.config.watch.concurrency}, sweep every ${app.config.watch.sweepIntervalSeconds} s)`);
  startTimer();

  const done = new Promise<number>((resolve) => {
    const onHup = (): void => {
      if (stop.signal.aborted) return;
      void reload('SIGHUP').then(() => sweep());
    };
    const onStop = (signal: string): void => {
      if (stop.signal.aborted) return;
      log().notice(`${signal}: stopping; ${running.size} running job(s) finish, roll back or are left for recovery`);
      stop.abort();
      if (timer) clearInterval(timer);
      pending.length = 0;
      queued.clear();
      void (async () => {
        await Promise.all(watchers.map((w) => w.close().catch(() => undefined)));
        await reloading;
        await sweeping?.catch(() => undefined);
        await Promise.all(running.values());
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
  await sweep();
  return done;
}

async function stillThere(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}
