/**
 * watch: the daemon. Watches every root (inotify), queues each new directory,
 * runs jobs with the configured concurrency, sweeps at start and periodically
 * (so nothing made while it was down, or missed, stays a plain directory),
 * reloads the config on SIGHUP, and on SIGTERM stops cleanly: waits are
 * abandoned (the directory is left as it is), copies before the commit roll
 * back, and jobs past it are left for recovery at the next start.
 */
import { basename, dirname } from 'node:path';
import chokidar, { type FSWatcher } from 'chokidar';
import { App, type GlobalOptions } from '../app.js';
import { RootEngine, oneLine } from '../core/index.js';
import { recoverRoot } from './recover.js';

export async function watch(options: GlobalOptions): Promise<number> {
  let app = await App.open(options);
  const stop = new AbortController();
  const queued = new Set<string>();
  const running = new Map<string, Promise<void>>();
  const pending: { engine: RootEngine; name: string; key: string }[] = [];
  let watchers: FSWatcher[] = [];
  let sweeping: Promise<void> | undefined;
  const log = app.engines[0]!.log;

  const pump = (): void => {
    while (!stop.signal.aborted && running.size < app.config.watch.concurrency && pending.length > 0) {
      const { engine, name, key } = pending.shift()!;
      queued.delete(key);
      const task = engine
        .handle(name, { signal: stop.signal })
        .then(() => undefined)
        .catch((error: unknown) => engine.log.error(`job failed unexpectedly: ${oneLine(error)}`, { dir: name }))
        .finally(() => {
          running.delete(key);
          pump();
        });
      running.set(key, task);
    }
  };

  const enqueue = (engine: RootEngine, name: string): void => {
    const key = `${engine.context.rootdir}\0${name}`;
    if (queued.has(key) || running.has(key) || stop.signal.aborted) return;
    queued.add(key);
    pending.push({ engine, name, key });
    pump();
  };

  const startWatching = async (): Promise<void> => {
    await Promise.all(watchers.map((w) => w.close()));
    watchers = app.engines.map((engine) => {
      const w = chokidar.watch(engine.context.rootdir, { depth: 0, ignoreInitial: true, followSymlinks: false });
      w.on('addDir', (path: string) => {
        if (dirname(path) === engine.context.rootdir) enqueue(engine, basename(path));
      });
      w.on('error', (error: unknown) => engine.log.error(`watching failed: ${oneLine(error)}`));
      return w;
    });
    await Promise.all(watchers.map((w) => new Promise<void>((resolve) => w.once('ready', () => resolve()))));
  };

  /** Recovers leftovers and queues every plain directory of every root; syncs exports. */
  const sweep = (): Promise<void> => {
    sweeping ??= (async () => {
      for (const engine of app.engines) {
        try {
          await recoverRoot(engine, stop.signal);
          // New jobs run through the queue, with its concurrency.
          const survey = await engine.survey();
          for (const name of RootEngine.candidates(survey)) enqueue(engine, name);
          await engine.sync(survey);
        } catch (error) {
          engine.log.error(`sweep failed: ${oneLine(error)}`);
        }
      }
    })().finally(() => {
      sweeping = undefined;
    });
    return sweeping;
  };

  await startWatching();
  log.notice(`watching ${app.engines.map((e) => e.context.rootdir).join(', ')}`);
  await sweep();
  let timer = setInterval(() => void sweep(), app.config.watch.sweepIntervalSeconds * 1000);

  const reload = async (): Promise<void> => {
    try {
      const next = await App.open(options);
      const old = app;
      app = next;
      await startWatching();
      clearInterval(timer);
      timer = setInterval(() => void sweep(), app.config.watch.sweepIntervalSeconds * 1000);
      log.notice('configuration reloaded');
      await Promise.all(running.values());
      await old.close();
      void sweep();
    } catch (error) {
      log.error(`configuration not reloaded, keeping the old one: ${oneLine(error)}`);
    }
  };

  return new Promise<number>((resolve) => {
    const onHup = (): void => void reload();
    const onStop = (signal: string): void => {
      if (stop.signal.aborted) return;
      log.notice(`${signal}: stopping; waiting for ${running.size} running job(s) to finish or park`);
      stop.abort();
      clearInterval(timer);
      pending.length = 0;
      void (async () => {
        await Promise.all(watchers.map((w) => w.close()));
        await sweeping?.catch(() => undefined);
        await Promise.all(running.values());
        log.notice('stopped');
        await app.close();
        process.off('SIGHUP', onHup);
        resolve(0);
      })();
    };
    process.on('SIGHUP', onHup);
    process.once('SIGTERM', () => onStop('SIGTERM'));
    process.once('SIGINT', () => onStop('SIGINT'));
  });
}
