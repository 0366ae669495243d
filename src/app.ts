/**
 * The application: a config (from a file or from the original command line)
 * turned into one engine per root, each with its plugins loaded and applied.
 */
import { realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import {
  ConfigError,
  Journal,
  RootEngine,
  createLogger,
  jobId,
  loadConfig,
  loadPlugins,
  setWarningLog,
  stderrSink,
  validateConfig,
  type Config,
  type JobObserver,
  type LogSink,
  type PluginSpec,
} from './core/index.js';
import { prepareStateDir } from './core/trust.js';
import { watchBudget } from './util/watches.js';
import { progressObservers } from './progress/index.js';

/** The plugins a root gets when the config lists none. */
export const DEFAULT_PLUGINS: readonly PluginSpec[] = ['name-filter', 'quiet-wait', 'zfs', 'rsync', 'syslog'];

export interface GlobalOptions {
  readonly config?: string;
  readonly dryRun?: boolean;
  readonly verbose?: boolean;
  readonly quiet?: boolean;
}

export class App {
  private constructor(
    readonly config: Config,
    readonly engines: readonly RootEngine[],
  ) {}

  static async open(options: GlobalOptions, given?: Config): Promise<App> {
    const config = given ?? (await loadConfig(options.config, DEFAULT_PLUGINS));
    if (!config) {
      throw new ConfigError('no configuration found: give --config PATH or create /etc/zfs-dynamic-creator/config.yaml');
    }
    // The journal and locks decide what is moved and removed: refuse to start on a
    // stateDir another user could write to (created 0700 when missing; not in a dry run).
    await prepareStateDir(config.stateDir, { create: !(options.dryRun ?? false) });
    watchBudget.configure(config.watch.inotifyShare);
    const sinks: LogSink[] = [stderrSink({ quiet: options.quiet ?? false, verbose: options.verbose ?? false })];
    setWarningLog(createLogger(sinks));
    const observers = await jobObservers(config, options);
    const engines: RootEngine[] = [];
    for (const [index, root] of config.roots.entries()) {
      const engine = new RootEngine({
        rootfs: root.rootfs,
        // Canonical: a rootdir given through a symlink is the same root, and paths derived from
        // it (and compared with what is mounted) are the real ones.
        rootdir: canonicalDir(root.rootdir),
        ...(root.layout ? { layout: root.layout } : {}),
        stateDir: config.stateDir,
        dryRun: options.dryRun ?? false,
        sinks,
        observers,
        plugins: root.plugins,
        baseDir: config.baseDir,
      });
      engine.plugins = await loadPlugins(root.plugins, {
        hooks: engine.hooks,
        root: { rootfs: root.rootfs, rootdir: engine.context.rootdir, ...(root.layout ? { layout: root.layout } : {}) },
        log: engine.log,
        dryRun: options.dryRun ?? false,
        stateDir: config.stateDir,
        baseDir: config.baseDir,
        where: `config ${config.source}: roots[${index}].plugins`,
        ...(root.origins ? { origins: { file: `config ${config.source}`, of: root.origins } } : {}),
      });
      engines.push(engine);
    }
    return new App(config, engines);
  }

  /**
   * For `recover`: the roots of `base` (the config, when there is one) plus every root that an
   * interrupted job recorded in the journal of `stateDir` and `base` does not list, with the
   * plugins that job ran with (a root used only through the original command line). Undefined
   * when there is neither.
   */
  static async fromJournal(stateDir: string, base?: Config): Promise<Config | undefined> {
    // A record whose root and name do not give its id was not written by the tool for that root:
    // it never defines a root to work on (see untrustedRecords).
    const records = (await new Journal(stateDir).list()).filter((r) => Array.isArray(r.plugins) && r.id === jobId(r.rootdir, r.name));
    const listed = new Set(base?.roots.map((r) => r.rootdir) ?? []);
    const roots = new Map<string, { rootfs: string; rootdir: string; plugins: PluginSpec[] }>();
    let baseDir: string | undefined;
    for (const r of records) {
      if (listed.has(r.rootdir) || roots.has(r.rootdir)) continue;
      roots.set(r.rootdir, { rootfs: r.rootfs, rootdir: r.rootdir, plugins: r.plugins ?? [] });
      baseDir ??= r.baseDir;
    }
    if (roots.size === 0) return base;
    const all = [...(base?.roots.map((r) => ({ rootfs: r.rootfs, rootdir: r.rootdir, plugins: [...r.plugins] })) ?? []), ...roots.values()];
    const source = base ? `${base.source} and the journal in ${stateDir}` : `the journal in ${stateDir}`;
    return validateConfig(
      { stateDir, roots: all, ...(base ? { watch: base.watch, ...(base.metrics ? { metrics: base.metrics } : {}) } : {}) },
      source,
      DEFAULT_PLUGINS,
      base?.baseDir ?? baseDir ?? '/',
    );
  }

  /**
   * Journal records that cannot have been written by the tool: their root and name do not give
   * their id (a tampered rootdir or name). One line each, for `recover` to print; never used.
   */
  static async untrustedRecords(stateDir: string): Promise<string[]> {
    const journal = new Journal(stateDir);
    return (await journal.list())
      .filter((r) => r.id !== jobId(r.rootdir, r.name))
      .map(
        (r) =>
          `journal record ${r.id} is not trusted (its id does not belong to its rootdir ${JSON.stringify(r.rootdir)} and name ${JSON.stringify(r.name)}); nothing was read from it or changed; inspect ${journal.file(r.id)}`,
      );
  }

  /**
   * The engine whose rootdir is `dir`'s parent (with a layout: its ancestor at the layout's depth),
   * and the name of `dir` in it (with a layout: its relative path, `exp/sample/run`).
   */
  locate(dir: string): { engine: RootEngine; name: string } {
    const absolute = resolve(dir).replace(/\/+$/, '');
    const canonical = (p: string): string => {
      try {
        return realpathSync(p);
      } catch {
        return p;
      }
    };
    const at = (depth: number): { parent: string; name: string } => {
      let parent = absolute;
      for (let i = 0; i < depth; i++) parent = dirname(parent);
      return { parent, name: absolute.slice(parent.length + 1) };
    };
    for (const exact of [true, false]) {
      for (const engine of this.engines) {
        const { parent, name } = at(engine.context.layout?.depth ?? 1);
        if (name !== '' && engine.context.rootdir === (exact ? parent : canonical(parent))) return { engine, name };
      }
    }
    const roots = this.engines.map((e) => e.context.rootdir).join(', ');
    throw new ConfigError(
      `${JSON.stringify(absolute)} is not a direct child of a configured root (${roots}), nor a run at its layout's depth`,
    );
  }

  /** Flushes and closes what plugins opened (syslog). */
  async close(): Promise<void> {
    for (const engine of this.engines) await engine.hooks.close.promise().catch(() => undefined);
  }
}

/** Who watches the jobs: the progress display of this terminal (or its absence), and the metrics file if configured. */
async function jobObservers(config: Config, options: GlobalOptions): Promise<JobObserver[]> {
  const observers = await progressObservers({ quiet: options.quiet ?? false });
  if (config.metrics !== undefined) {
    const { MetricsTextfile } = await import('./metrics/textfile.js');
    observers.push(new MetricsTextfile(config.metrics.textfile, config.stateDir).observer());
  }
  return observers;
}

/** The real path of a directory (the path itself when it cannot be resolved: prepare then says why). */
function canonicalDir(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}
