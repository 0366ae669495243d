#!/usr/bin/env node
/**
 * zfs-dynamic-creator's command line.
 *
 *   zfs-dynamic-creator [options] <rootfs> <rootdir> <filename> <event>   incron, as the original
 *   zfs-dynamic-creator [options] <rootfs> <rootdir>                      maintenance, as the original
 *   zfs-dynamic-creator handle <dir>                                      convert one directory
 *   zfs-dynamic-creator recover                                           finish or undo interrupted jobs
 *   zfs-dynamic-creator reconcile [--json] [--root <rootdir>]             sweep every root (or one)
 *   zfs-dynamic-creator watch                                             the daemon
 *   zfs-dynamic-creator status [--json]                                   what is in flight
 *   zfs-dynamic-creator list-plugins [--json]                             what each root runs
 *   zfs-dynamic-creator history [--json]                                  what was converted, when, how big
 *   zfs-dynamic-creator doctor [--json]                                   check everything before it matters
 */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { App, type GlobalOptions } from './app.js';
import { ConfigError, DEFAULT_STATE_DIR, loadConfig, oneLine, oneLineText, ownVersion, type Config, type Outcome } from './core/index.js';
import { isDirectoryCreation, legacyConfig } from './legacy.js';
import { DEFAULT_PLUGINS } from './app.js';
import { listPlugins } from './commands/list-plugins.js';
import { recover } from './commands/recover.js';
import { status } from './commands/status.js';
import { reconcile } from './commands/reconcile.js';
import { watch } from './commands/watch.js';
import { history } from './commands/history.js';
import { doctor } from './commands/doctor.js';
import { jsonText } from './commands/envelope.js';

/** Exit codes. */
export const EXIT = { ok: 0, failed: 1, usage: 2, deferred: 75 } as const;

export function exitCodeFor(outcome: Outcome): number {
  switch (outcome.kind) {
    case 'failed':
      return EXIT.failed;
    case 'deferred':
      return EXIT.deferred;
    default:
      return EXIT.ok;
  }
}

/**
 * SIGTERM or SIGINT asks a running job to stop safely: waits give up (the
 * directory stays as it is), a copy before the commit is cancelled and rolled
 * back, a job past the commit is left for recovery. A second signal exits at once.
 */
function stopSignal(): AbortSignal {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals): void => {
    if (controller.signal.aborted) process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
    process.stderr.write(`zfs-dynamic-creator: ${signal}: stopping safely\n`);
    controller.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return controller.signal;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('a number of seconds');
  return n;
}

function addGlobal(command: Command): Command {
  return command
    .option('--config <path>', 'configuration file (default: /etc/zfs-dynamic-creator/config.{yaml,yml,json,js,mjs,cjs}; never searched for in the working directory)')
    .option('--dry-run', 'say what would be done, change nothing')
    .option('-v, --verbose', 'log debug messages too')
    .option('-q, --quiet', 'log only errors to stderr');
}

function globals(command: Command): GlobalOptions {
  const o = command.optsWithGlobals<{ config?: string; dryRun?: boolean; verbose?: boolean; quiet?: boolean }>();
  return { config: o.config !== undefined ? resolve(o.config) : undefined, dryRun: o.dryRun ?? false, verbose: o.verbose ?? false, quiet: o.quiet ?? false };
}

/**
 * Leaves the working directory for / once the paths of the command line are
 * resolved: nothing is read from it, and it is often a directory a user owns,
 * which the job may move aside (every command run later would then start in a
 * directory that is gone, or is the user's).
 */
function leaveWorkingDirectory(): void {
  process.chdir('/');
}

/** Runs `body` with an app, closing it whatever happens; returns the exit code. */
async function withApp(options: GlobalOptions, body: (app: App) => Promise<number>, given?: Parameters<typeof App.open>[1]): Promise<number> {
  leaveWorkingDirectory();
  const app = await App.open(options, given);
  try {
    return await body(app);
  } finally {
    await app.close();
  }
}

export function buildProgram(setExit: (code: number) => void): Command {
  const program = new Command();
  program
    .name('zfs-dynamic-creator')
    .version(ownVersion(), '-V, --version')
    .description('Turn each directory that appears under a watched root into its own ZFS filesystem, without losing a byte.')
    .enablePositionalOptions()
    .passThroughOptions()
    .showHelpAfterError(false)
    .argument('[rootfs]', 'the ZFS filesystem of the root (original invocation)')
    .argument('[rootdir]', 'the directory it is mounted at')
    .argument('[filename]', 'the new directory (incron $#)')
    .argument('[event]', 'the incron event ($%); only IN_CREATE,IN_ISDIR acts')
    .addOption(new Option('--delay <seconds>', 'wait this long before starting').argParser(seconds))
    .option('--add-export', 'add the new filesystem to /etc/exports and run exportfs -r')
    .option('--add-remove-all-exports', 'make the exports match the filesystems under rootfs')
    .option('--only-dirs-matching <regex>', 'convert only names matching this (Python) regular expression');
  addGlobal(program);

  program.action(async (rootfs: string | undefined, rootdir: string | undefined, filename: string | undefined, event: string | undefined, _o: unknown, command: Command) => {
    if (rootfs === undefined || rootdir === undefined) throw new ConfigError('usage: zfs-dynamic-creator [options] <rootfs> <rootdir> [<filename> <event>]');
    const options = globals(command);
    const flags = command.opts<{ delay?: number; addExport?: boolean; addRemoveAllExports?: boolean; onlyDirsMatching?: string }>();
    if (filename !== undefined && event === undefined) throw new ConfigError('usage: give both <filename> and <event>, or neither');
    if (event !== undefined && !isDirectoryCreation(event)) {
      setExit(EXIT.ok); // not a directory being created: ignored quietly
      return;
    }
    const file = await loadConfig(options.config, DEFAULT_PLUGINS);
    const config = legacyConfig(rootfs, rootdir, flags, file);
    setExit(
      await withApp(
        options,
        async (app) => {
          const engine = app.engines[0]!;
          if (filename === undefined) {
            // Like every run for a root: first finish (or undo) its interrupted jobs.
            const recovered = await engine.recoverRoot();
            await engine.sync();
            return recovered.some((r) => r.outcome.kind === 'failed') ? EXIT.failed : EXIT.ok;
          }
          const outcome = await engine.handle(filename, { signal: stopSignal(), recoverRoot: true });
          return report(outcome);
        },
        config,
      ),
    );
  });

  addGlobal(program.command('handle').description('convert one directory, a direct child of a configured root').argument('<dir>'))
    .option('--event <mask>', "the incron event ($%): anything but IN_CREATE,IN_ISDIR is ignored quietly")
    .option('--no-wait', 'return once the new filesystem is live and published; the grace period and removal of the original are left to the next run for this root (reconcile, the daemon, recover)')
    .action(async (dir: string, o: { event?: string; wait: boolean }, command: Command) => {
    if (o.event !== undefined && !isDirectoryCreation(o.event)) return;
    const target = resolve(dir);
    setExit(
      await withApp(globals(command), async (app) => {
        const { engine, name } = app.locate(target);
        return report(await engine.handle(name, { signal: stopSignal(), recoverRoot: true, deferCleanup: !o.wait }));
      }),
    );
  });

  addGlobal(program.command('recover').description('finish or undo every interrupted job (without a config: the jobs the journal recorded, with their own roots and plugins)'))
    .option('--json', 'print the summary as JSON')
    .action(async (o: { json?: boolean }, command: Command) => {
      const options = globals(command);
      // The config's roots, and every root an interrupted job recorded in the journal that the
      // config does not list (one used only through the original command line), with its plugins.
      const file = await loadConfig(options.config, DEFAULT_PLUGINS);
      const stateDir = file?.stateDir ?? process.env.ZFS_DYNAMIC_CREATOR_STATE_DIR ?? DEFAULT_STATE_DIR;
      // Records whose root is not the one their id was made from are named and left alone.
      const untrusted = file === undefined ? await App.untrustedRecords(stateDir) : [];
      for (const line of untrusted) {
        process.stderr.write(`zfs-dynamic-creator: ERROR: ${line}\n`);
        if (!o.json) process.stdout.write(`${'failed'.padEnd(11)} ${line}\n`);
      }
      const given: Config | undefined = await App.fromJournal(stateDir, file);
      if (given === undefined) {
        if (untrusted.length === 0) process.stdout.write(o.json ? jsonText('recover', { config: null, results: [] }) : 'nothing to recover (no configuration, and no interrupted job in the journal)\n');
        setExit(untrusted.length > 0 ? EXIT.failed : EXIT.ok);
        return;
      }
      const code = await withApp(options, (app) => recover(app, { json: o.json ?? false }), given);
      setExit(untrusted.length > 0 ? EXIT.failed : code);
    });

  addGlobal(program.command('reconcile').description('sweep every root: convert what was missed, finish interrupted jobs, sync exports'))
    .option('--json', 'print the summary as JSON')
    .option('--root <rootdir>', 'sweep only this configured root (for incron: the line passes no directory name)')
    .action(async (o: { json?: boolean; root?: string }, command: Command) => {
      setExit(await withApp(globals(command), (app) => reconcile(app, { json: o.json ?? false, ...(o.root !== undefined ? { root: resolve(o.root) } : {}) })));
    });

  addGlobal(program.command('watch').description('watch every root and convert new directories (the daemon)')).action(async (_o: unknown, command: Command) => {
    const options = globals(command);
    leaveWorkingDirectory();
    setExit(await watch(options));
  });

  addGlobal(program.command('status').description('show interrupted and running jobs')).option('--json', 'print as JSON').action(async (o: { json?: boolean }, command: Command) => {
    setExit(await withApp(globals(command), (app) => status(app, { json: o.json ?? false })));
  });

  addGlobal(program.command('list-plugins').description('show, for each root, every plugin, where it came from, and the hooks it taps'))
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }, command: Command) => {
      setExit(await withApp(globals(command), (app) => listPlugins(app, { json: o.json ?? false })));
    });

  // ---- operating it: history, doctor ----------------------------------------------------------------
  addGlobal(program.command('history').description('list conversions (when, by which version, files, bytes, duration) from the datasets\' own properties'))
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }, command: Command) => {
      setExit(await withApp(globals(command), (app) => history(app, { json: o.json ?? false })));
    });

  addGlobal(program.command('doctor').description('check the config, the pool, the binaries and the state before it matters; exit 0 only when nothing failed'))
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }, command: Command) => {
      const options = globals(command);
      leaveWorkingDirectory();
      setExit(await doctor(options, { json: o.json ?? false }));
    });

  return program;
}

function report(outcome: Outcome): number {
  const code = exitCodeFor(outcome);
  if (code !== EXIT.ok) process.stderr.write(`zfs-dynamic-creator: ${oneLineText(outcome.message)}\n`);
  return code;
}

export async function main(argv: readonly string[]): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram((c) => {
    code = c;
  });
  program.exitOverride();
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    const commanderCode = (error as { code?: string; exitCode?: number }).code;
    if (commanderCode === 'commander.helpDisplayed' || commanderCode === 'commander.version') return EXIT.ok;
    if (commanderCode?.startsWith('commander.')) return (error as { exitCode?: number }).exitCode === 0 ? EXIT.ok : EXIT.usage;
    process.stderr.write(`zfs-dynamic-creator: ${oneLineText(oneLine(error))}\n`);
    return error instanceof ConfigError ? EXIT.usage : EXIT.failed;
  }
  return code;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === (await import('node:url')).pathToFileURL((await import('node:fs')).realpathSync(process.argv[1])).href;
if (invokedDirectly) {
  process.exitCode = await main(process.argv.slice(2));
}
