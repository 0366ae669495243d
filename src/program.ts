/**
 * zfs-dynamic-creator's command line (run by the bin, src/cli.ts, once the compile cache is set up).
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
 *   zfs-dynamic-creator check-config                                      validate the config and exit
 *   zfs-dynamic-creator help [<command>]                                  a command's help
 *
 * A first operand that is not a command is the original form only when it is followed by an
 * absolute <rootdir>; a misspelt command never falls into it ("did you mean …?", exit 2).
 * Each command's --help, and the man page (src/man.ts), show its examples and exit codes from
 * COMMAND_HELP below.
 */
import { lstat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { App, type GlobalOptions } from './app.js';
import {
  ConfigError,
  DEFAULT_STATE_DIR,
  JOURNAL_PRIORITY,
  ignoreBrokenPipes,
  isErrno,
  journalIsStderr,
  loadConfig,
  logToStderr,
  oneLine,
  oneLineText,
  ownVersion,
  writeStderr,
  writeStdout,
  type Config,
  type LogLevel,
  type Outcome,
  type OutcomeKind,
} from './core/index.js';
import { runtimeNote } from './core/embedded.js';
import { isDirectoryCreation, legacyConfig } from './legacy.js';
import { DEFAULT_PLUGINS } from './app.js';
import { listPlugins, optionLines, pluginRows } from './commands/list-plugins.js';
import { outcomeLabel, reconcile } from './commands/reconcile.js';
import { jsonText } from './commands/envelope.js';
// The other commands are imported when they run: the incron path (a run that rejects a name, for
// every directory made in a root) loads only what it needs (not the daemon, doctor, status, history).

export { routeProcessWarnings } from './core/index.js';

/** Exit codes. */
export const EXIT = { ok: 0, failed: 1, usage: 2, deferred: 75 } as const;

export function exitCodeFor(outcome: Outcome): number {
  switch (outcome.kind) {
    case 'failed':
      return EXIT.failed;
    case 'refused':
      // Said and remembered by an earlier run: not a failure of this one.
      return outcome.remembered ? EXIT.ok : EXIT.failed;
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
    logToStderr('notice', `${signal}: stopping safely`);
    controller.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return controller.signal;
}

/** The CLI's own one-line message (a usage error, a job's reason): `zfs-dynamic-creator: …`, or `<N>…` for the journal. */
function say(level: LogLevel, text: string): void {
  writeStderr(journalIsStderr() ? `<${JOURNAL_PRIORITY[level]}>${oneLineText(text)}\n` : `zfs-dynamic-creator: ${oneLineText(text)}\n`);
}

/** A usage error: exit 2. */
export class UsageError extends ConfigError {}

/** Examples and exit codes of the program ('' for the original command line) and of each command. */
export interface CommandHelp {
  readonly examples: readonly (readonly [command: string, what: string])[];
  readonly exits: readonly (readonly [code: number, meaning: string])[];
}

const USAGE_EXIT = [EXIT.usage, 'usage or configuration error (restarting does not help; fix the command line or the config)'] as const;
const FAILED_EXIT = [EXIT.failed, 'failed; a one-line reason on stderr'] as const;

export const COMMAND_HELP: Readonly<Record<string, CommandHelp>> = {
  '': {
    examples: [
      ['zfs-dynamic-creator --add-export --delay=30 tank/runs /tank/runs run42 IN_CREATE,IN_ISDIR', "the original script's incron invocation: convert /tank/runs/run42 and export it"],
      ['zfs-dynamic-creator --add-remove-all-exports tank/runs /tank/runs', 'maintenance: finish interrupted jobs, make the exports match the filesystems; prints a summary'],
      ['zfs-dynamic-creator help reconcile', "a command's help"],
    ],
    exits: [
      [EXIT.ok, 'converted, deliberately skipped, not a directory creation (ignored), or handled by another process; maintenance done'],
      [EXIT.deferred, 'deferred: not quiet in time, or stopped by SIGTERM and rolled back; it will be tried again'],
      USAGE_EXIT,
      FAILED_EXIT,
    ],
  },
  handle: {
    examples: [
      ['zfs-dynamic-creator handle /tank/runs/run42', 'convert one directory of a configured root now'],
      ['zfs-dynamic-creator --dry-run -v handle /tank/runs/run42', 'say what would be done, change nothing'],
      ['zfs-dynamic-creator handle --no-wait /tank/runs/run42', 'return once it is live and exported; the grace period and the removal of the original are left to the next run'],
      ['zfs-dynamic-creator handle --event=IN_CREATE,IN_ISDIR /tank/runs/run42', 'from incron (trusted roots only: incron runs the line through a shell)'],
    ],
    exits: [
      [EXIT.ok, 'converted, deliberately skipped, or handled by another process; with --event, a directory gone before its turn'],
      [EXIT.deferred, 'deferred: not quiet in time, or stopped by SIGTERM and rolled back; it will be tried again'],
      [EXIT.usage, 'usage or configuration error, a mistyped path among them ("no such directory", said once); restarting does not help'],
      [EXIT.failed, 'failed, or refused (a name ZFS forbids, over the quota: remembered, so sweeps do not try it again until the directory or the config changes; handle always tries); a one-line reason on stderr'],
    ],
  },
  recover: {
    examples: [
      ['zfs-dynamic-creator recover', "finish or undo every interrupted job of the config's roots and of roots only the journal knows"],
      ['zfs-dynamic-creator recover --json', 'the same, the summary as JSON'],
    ],
    exits: [[EXIT.ok, 'nothing left to finish, or everything finished or undone'], USAGE_EXIT, [EXIT.failed, 'a job could not be finished or undone (named on stdout and stderr)']],
  },
  reconcile: {
    examples: [
      ['zfs-dynamic-creator reconcile', 'sweep every configured root once (what the timer runs)'],
      ['zfs-dynamic-creator reconcile --root /tank/runs', "sweep one root (the incrontab line: IN_CREATE,IN_ONLYDIR on the root)"],
      ['zfs-dynamic-creator --dry-run reconcile', 'list what would be converted ("would convert")'],
      ['zfs-dynamic-creator reconcile --summary', 'from cron: one line per job that is news, nothing (no mail) when nothing happened'],
    ],
    exits: [
      [EXIT.ok, 'every root swept (deferred directories are tried again at the next sweep; refused ones, said once and listed by status, when they or the config change)'],
      USAGE_EXIT,
      [EXIT.failed, 'a job failed or a root could not be swept'],
    ],
  },
  watch: {
    examples: [
      ['zfs-dynamic-creator watch -v', 'run the daemon in the foreground, with debug messages'],
      ['systemctl enable --now zfs-dynamic-creator.service', 'run it under systemd (the usual way: contrib/systemd)'],
    ],
    exits: [[EXIT.ok, 'stopped by SIGTERM or SIGINT (jobs stopped safely)'], USAGE_EXIT, [EXIT.failed, 'could not start']],
  },
  status: {
    examples: [
      ['zfs-dynamic-creator status', 'directories waiting, jobs running or interrupted, and why a job stopped'],
      ['zfs-dynamic-creator status --json', 'the same as JSON'],
      ['zfs-dynamic-creator status', "a dead daemon: 'daemon not running (pid N, last seen T)'; refused directories: 'refused \"NAME\" needs attention: REASON'"],
    ],
    exits: [[EXIT.ok, 'shown'], USAGE_EXIT, FAILED_EXIT],
  },
  'list-plugins': {
    examples: [
      ['zfs-dynamic-creator list-plugins', "each root's plugins, where they came from, their versions and hooks"],
      ['zfs-dynamic-creator --config ./test.yaml list-plugins --json', 'the same for another config, as JSON'],
      ['zfs-dynamic-creator list-plugins --options', "with each plugin's effective options (a root's overrides merged in)"],
    ],
    exits: [[EXIT.ok, 'shown'], USAGE_EXIT, FAILED_EXIT],
  },
  history: {
    examples: [
      ['zfs-dynamic-creator history', 'what was converted, when, by which version, how big and how long (from the datasets themselves)'],
      ['zfs-dynamic-creator history --json', 'the same as JSON'],
    ],
    exits: [[EXIT.ok, 'shown'], USAGE_EXIT, [EXIT.failed, "a root's datasets could not be listed"]],
  },
  doctor: {
    examples: [
      ['zfs-dynamic-creator doctor', 'check the config, the pools, the binaries and the state: one line per check'],
      ['zfs-dynamic-creator --config ./new.yaml doctor --json', 'check a new config, as JSON'],
    ],
    exits: [[EXIT.ok, 'nothing failed (warnings allowed)'], USAGE_EXIT, [EXIT.failed, 'a check failed (named on stdout)']],
  },
  'check-config': {
    examples: [
      ['zfs-dynamic-creator check-config', 'check /etc/zfs-dynamic-creator/config.* (ExecStartPre= of the units)'],
      ['zfs-dynamic-creator --config ./new.yaml check-config', 'check a new config before putting it in place'],
      ['zfs-dynamic-creator check-config --options', "and show each root's plugins with their effective options"],
    ],
    exits: [[EXIT.ok, "the config is valid: its keys, its plugins and their options, its files and stateDir in trusted places, each root's dataset mounted at its rootdir, the ZFS property names"], [EXIT.usage, 'the config is not valid: every problem on its own line, with "did you mean" for a mistyped key or option'], [EXIT.failed, "a root's dataset is not mounted at its rootdir (the config may be right and the pool not imported yet)"]],
  },
  help: {
    examples: [
      ['zfs-dynamic-creator help', "the program's help"],
      ['zfs-dynamic-creator help handle', "handle's help (the same as handle --help)"],
    ],
    exits: [[EXIT.ok, 'shown'], [EXIT.usage, 'no such command']],
  },
};

/** The text --help shows after the options: examples and exit codes. */
export function helpEpilogue(name: string): string {
  const help = COMMAND_HELP[name];
  if (!help) return '';
  const examples = help.examples.map(([command, what]) => `  $ ${command}\n      ${what}`).join('\n');
  const exits = help.exits.map(([code, meaning]) => `  ${String(code).padEnd(3)} ${meaning}`).join('\n');
  return `\nExamples:\n${examples}\n\nExit status:\n${exits}\n`;
}

/** Optimal string alignment distance (a swap of two neighbours counts one). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
      d[i]![j] = best;
    }
  }
  return d[a.length]![b.length]!;
}

/** The command `word` is probably a misspelling of (one edit for short names, two for longer ones), if any. */
export function closestCommand(word: string, commands: readonly string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of commands) {
    const distance = editDistance(word.toLowerCase(), name);
    const allowed = name.length <= 5 ? 1 : 2;
    if (distance <= allowed && (best === undefined || distance < best.distance)) best = { name, distance };
  }
  return best?.name;
}

/**
 * Why the operands are not the original command line (`<rootfs> <rootdir> [<filename> <event>]`),
 * or undefined when they are. A subcommand never gets here (commander dispatches it first); a
 * bare word close to a command name, a single bare word, or a word followed by anything but an
 * absolute directory is a usage error, never a run with a rootfs named like a command.
 */
export function notTheOriginalForm(operands: readonly string[], commands: readonly string[]): string | undefined {
  const [first, second] = operands;
  const hint = "run 'zfs-dynamic-creator --help' for the commands and the original form";
  if (first === undefined) return `usage: zfs-dynamic-creator <command> … or zfs-dynamic-creator [options] <rootfs> <rootdir> [<filename> <event>]; ${hint}`;
  const bare = !first.includes('/');
  const near = bare ? closestCommand(first, commands) : undefined;
  if (near !== undefined) return `unknown command ${JSON.stringify(first)} (did you mean ${near}?); ${hint}`;
  if (second === undefined || !second.startsWith('/')) {
    if (bare) return `unknown command ${JSON.stringify(first)}; ${hint}`;
    return second === undefined
      ? `usage: the original form needs <rootdir> after <rootfs> ${JSON.stringify(first)}; ${hint}`
      : `usage: <rootdir> must be an absolute path, not ${JSON.stringify(second)}; ${hint}`;
  }
  return undefined;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('a number of seconds');
  return n;
}

/** The environment variable naming the config file when --config is not given. */
export const CONFIG_ENV = 'ZFS_DYNAMIC_CREATOR_CONFIG';

/** Commands that change nothing: --dry-run would mean nothing there, so it is not offered. */
const WITHOUT_DRY_RUN = new Set(['status', 'list-plugins', 'history', 'check-config']);

function addGlobal(command: Command): Command {
  command.option('--config <path>', `configuration file (default: $${CONFIG_ENV}, else /etc/zfs-dynamic-creator/config.{yaml,yml,json,js,mjs,cjs}; never searched for in the working directory)`);
  // Kept hidden where it means nothing, so that giving it there is refused by globals() in words.
  const dryRun = new Option('--dry-run', 'say what would be done, change nothing');
  command.addOption(WITHOUT_DRY_RUN.has(command.name()) ? dryRun.hideHelp() : dryRun);
  return command.option('-v, --verbose', 'log debug messages too').option('-q, --quiet', 'log only errors to stderr');
}

function globals(command: Command): GlobalOptions {
  const o = command.optsWithGlobals<{ config?: string; dryRun?: boolean; verbose?: boolean; quiet?: boolean }>();
  if (o.dryRun === true && WITHOUT_DRY_RUN.has(command.name())) {
    throw new UsageError(`usage: ${command.name()} changes nothing: --dry-run is not offered there`);
  }
  // --config wins over the environment; either is checked as trusted the same way.
  const config = o.config ?? (process.env[CONFIG_ENV] || undefined);
  return { config: config !== undefined ? resolve(config) : undefined, dryRun: o.dryRun ?? false, verbose: o.verbose ?? false, quiet: o.quiet ?? false };
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
  // Set before the subcommands are made, so that they inherit them: commander's own errors
  // come back to main() (exit 2) instead of exiting, and its output cannot break on a closed pipe.
  program.exitOverride();
  program.configureOutput({ writeOut: writeStdout, writeErr: writeStderr });
  program.helpCommand(false);
  program
    .name('zfs-dynamic-creator')
    .version(`${ownVersion()}${runtimeNote()}`, '-V, --version')
    .description('Turn each directory that appears under a watched root into its own ZFS filesystem, without losing a byte.')
    .enablePositionalOptions()
    .passThroughOptions()
    .showHelpAfterError("(run 'zfs-dynamic-creator help <command>' for its options, examples and exit codes)")
    .argument('[rootfs]', 'the ZFS filesystem of the root (original invocation)')
    .argument('[rootdir]', 'the directory it is mounted at')
    .argument('[filename]', 'the new directory (incron $#)')
    .argument('[event]', 'the incron event ($%); only IN_CREATE,IN_ISDIR acts')
    .addOption(new Option('--delay <seconds>', 'wait this long before starting').argParser(seconds))
    .option('--add-export', 'add the new filesystem to /etc/exports and run exportfs -r')
    .option('--add-remove-all-exports', 'make the exports match the filesystems under rootfs')
    .option('--only-dirs-matching <regex>', 'convert only names matching this (Python) regular expression');
  addGlobal(program);

  program.addHelpText('after', () => helpEpilogue(''));
  program.action(async (rootfs: string | undefined, rootdir: string | undefined, filename: string | undefined, event: string | undefined, _o: unknown, command: Command) => {
    const commands = program.commands.map((c) => c.name());
    const problem = notTheOriginalForm([rootfs, rootdir].filter((x): x is string => x !== undefined), commands);
    if (problem !== undefined || rootfs === undefined || rootdir === undefined) throw new UsageError(problem ?? 'usage: zfs-dynamic-creator [options] <rootfs> <rootdir> [<filename> <event>]');
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
            // What it did, like reconcile's summary (not with -q: cron mails any output).
            if (!options.quiet) writeStdout(maintenanceSummary(engine.context.rootdir, engine.context.rootfs, recovered.map((r) => ({ name: r.name, kind: r.outcome.kind, message: r.outcome.message })), {
              exports: engine.plugins.some((p) => p.name === 'nfs-exports') ? (flags.addRemoveAllExports ? 'made to match the filesystems' : 'added where missing') : undefined,
              dryRun: options.dryRun ?? false,
            }));
            return recovered.some((r) => r.outcome.kind === 'failed') ? EXIT.failed : EXIT.ok;
          }
          const outcome = await engine.handle(filename, { signal: stopSignal(), recoverRoot: true });
          return report(outcome);
        },
        config,
      ),
    );
  });

  addGlobal(program.command('handle').description('convert one directory, a direct child of a configured root').argument('<dir>', 'the directory to convert'))
    .option('--event <mask>', "the incron event ($%): anything but IN_CREATE,IN_ISDIR is ignored quietly")
    .option('--no-wait', 'return once the new filesystem is live and published; the grace period and removal of the original are left to the next run for this root (reconcile, the daemon, recover)')
    .action(async (dir: string, o: { event?: string; wait: boolean }, command: Command) => {
    if (o.event !== undefined && !isDirectoryCreation(o.event)) return;
    const target = resolve(dir);
    setExit(
      await withApp(globals(command), async (app) => {
        const { engine, name } = app.locate(target);
        if (!target.includes('\uFFFD') && (await missing(target))) {
          // Said once. Typed by hand: a wrong operand (2). From incron: gone before its turn, nothing to do.
          if (o.event !== undefined) {
            say('notice', `no such directory: ${JSON.stringify(target)} (gone before its turn); nothing to do`);
            return EXIT.ok;
          }
          throw new UsageError(`no such directory: ${JSON.stringify(target)}`);
        }
        return report(await engine.handle(name, { signal: stopSignal(), recoverRoot: true, deferCleanup: !o.wait, retryRefused: true }));
      }),
    );
  });

  addGlobal(program.command('recover').description('finish or undo every interrupted job (without a config: the jobs the journal recorded, with their own roots and plugins)'))
    .option('--json', 'print the summary as JSON')
    .option('--summary', SUMMARY_HELP)
    .action(async (o: { json?: boolean; summary?: boolean }, command: Command) => {
      const options = summaryOptions(globals(command), o);
      // The config's roots, and every root an interrupted job recorded in the journal that the
      // config does not list (one used only through the original command line), with its plugins.
      const file = await loadConfig(options.config, DEFAULT_PLUGINS);
      const stateDir = file?.stateDir ?? process.env.ZFS_DYNAMIC_CREATOR_STATE_DIR ?? DEFAULT_STATE_DIR;
      // Records whose root is not the one their id was made from are named and left alone.
      const untrusted = file === undefined ? await App.untrustedRecords(stateDir) : [];
      for (const line of untrusted) {
        logToStderr('error', line);
        if (!o.json) writeStdout(`${'failed'.padEnd(11)} ${line}\n`);
      }
      const given: Config | undefined = await App.fromJournal(stateDir, file);
      if (given === undefined) {
        if (untrusted.length === 0 && !o.summary) writeStdout(o.json ? jsonText('recover', { config: null, results: [] }) : 'nothing to recover (no configuration, and no interrupted job in the journal)\n');
        setExit(untrusted.length > 0 ? EXIT.failed : EXIT.ok);
        return;
      }
      const { recover } = await import('./commands/recover.js');
      const code = await withApp(options, (app) => recover(app, { json: o.json ?? false, summary: o.summary ?? false }), given);
      setExit(untrusted.length > 0 ? EXIT.failed : code);
    });

  addGlobal(program.command('reconcile').description('sweep every root: convert what was missed, finish interrupted jobs, sync exports'))
    .option('--json', 'print the summary as JSON')
    .option('--summary', SUMMARY_HELP)
    .option('--root <rootdir>', 'sweep only this configured root (for incron: the line passes no directory name)')
    .action(async (o: { json?: boolean; summary?: boolean; root?: string }, command: Command) => {
      const options = summaryOptions(globals(command), o);
      setExit(await withApp(options, (app) => reconcile(app, { json: o.json ?? false, summary: o.summary ?? false, ...(o.root !== undefined ? { root: resolve(o.root) } : {}) })));
    });

  addGlobal(program.command('watch').description('watch every root and convert new directories (the daemon)')).action(async (_o: unknown, command: Command) => {
    const options = globals(command);
    leaveWorkingDirectory();
    const { watch } = await import('./commands/watch.js');
    setExit(await watch(options));
  });

  addGlobal(program.command('status').description('show interrupted and running jobs')).option('--json', 'print as JSON').action(async (o: { json?: boolean }, command: Command) => {
    const { status } = await import('./commands/status.js');
    setExit(await withApp(globals(command), (app) => status(app, { json: o.json ?? false })));
  });

  addGlobal(program.command('list-plugins').description('show, for each root, every plugin, where it came from, and the hooks it taps'))
    .option('--json', 'print as JSON (with the options)')
    .option('--options', "show each plugin's effective options: defaults applied, the root's overrides merged in")
    .action(async (o: { json?: boolean; options?: boolean }, command: Command) => {
      setExit(await withApp(globals(command), (app) => listPlugins(app, { json: o.json ?? false, options: o.options ?? false })));
    });

  // ---- operating it: history, doctor ----------------------------------------------------------------
  addGlobal(program.command('history').description('list conversions (when, by which version, files, bytes, duration) from the datasets\' own properties'))
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }, command: Command) => {
      const { history } = await import('./commands/history.js');
      setExit(await withApp(globals(command), (app) => history(app, { json: o.json ?? false })));
    });

  addGlobal(program.command('doctor').description('check the config, the pool, the binaries and the state before it matters; exit 0 only when nothing failed'))
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }, command: Command) => {
      const options = globals(command);
      leaveWorkingDirectory();
      const { doctor } = await import('./commands/doctor.js');
      setExit(await doctor(options, { json: o.json ?? false }));
    });

  addGlobal(
    program
      .command('check-config')
      .description('check the configuration and exit: syntax, keys, plugins and their options, trusted places (what the systemd units run first)'),
  )
    .option('--options', "also show each root's plugins with their effective options (the root's overrides merged in)")
    .option('--json', 'print the result as JSON: ok and every problem found')
    .action(async (o: { options?: boolean; json?: boolean }, command: Command) => {
    // A dry run: nothing is created (not even the stateDir, nor a probe dataset), only checked.
    const options: GlobalOptions = { ...globals(command), dryRun: true };
    leaveWorkingDirectory();
    // Every static check doctor makes, all mistakes at once, one line each.
    const { Doctor } = await import('./commands/doctor.js');
    const checks = await new Doctor(options, false).staticChecks();
    const problems = checks.filter((c) => c.status === 'fail').map((c) => c.detail);
    if (problems.length > 0 || o.json) {
      if (o.json) writeStdout(jsonText('check-config', { config: options.config ?? null, ok: problems.length === 0, problems }));
      else for (const problem of problems) say('error', problem);
      // A root's dataset not (yet) mounted is the machine's state, not the config's: exit 1, so
      // that a unit started before the pool is imported is started again.
      const configs = checks.filter((c) => c.status === 'fail' && !c.check.endsWith('.mount'));
      setExit(configs.length > 0 ? EXIT.usage : problems.length > 0 ? EXIT.failed : EXIT.ok);
      return;
    }
    const app = await App.open(options);
    try {
      const roots = app.engines.map((e) => `${e.context.rootdir} (${e.context.rootfs}): ${e.plugins.map((p) => p.name).join(', ')}`);
      const effective = o.options ? pluginRows(app).map((root) => optionLines(root, '    ')) : [];
      writeStdout(`config ${app.config.source}: valid; stateDir ${app.config.stateDir}; ${roots.length} root(s)\n${roots.map((r, i) => `  ${r}\n${(effective[i] ?? []).map((l) => `${l}\n`).join('')}`).join('')}`);
    } finally {
      await app.close();
    }
    setExit(EXIT.ok);
  });

  program
    .command('help')
    .description("show a command's help (the same as <command> --help)")
    .argument('[command]', 'the command')
    .action((name: string | undefined) => {
      if (name === undefined) {
        program.outputHelp();
        return;
      }
      const found = program.commands.find((c) => c.name() === name || c.aliases().includes(name));
      if (!found) {
        const near = closestCommand(name, program.commands.map((c) => c.name()));
        throw new UsageError(`unknown command ${JSON.stringify(name)}${near !== undefined ? ` (did you mean ${near}?)` : ''}; the commands: ${program.commands.map((c) => c.name()).join(', ')}`);
      }
      found.outputHelp();
    });

  for (const command of program.commands) {
    const name = command.name();
    command.addHelpText('after', () => helpEpilogue(name));
  }
  return program;
}

/** The 2-argument mode's summary line, like reconcile's: `<rootdir> (<rootfs>): …`. */
export function maintenanceSummary(
  rootdir: string,
  rootfs: string,
  jobs: readonly { name: string; kind: OutcomeKind; message: string }[],
  options: { exports: string | undefined; dryRun: boolean },
): string {
  const counts = new Map<string, number>();
  for (const j of jobs) counts.set(outcomeLabel(j.kind, options.dryRun), (counts.get(outcomeLabel(j.kind, options.dryRun)) ?? 0) + 1);
  const recovered = jobs.length === 0 ? 'no interrupted job' : [...counts].map(([k, n]) => `${n} ${k}`).join(', ');
  const exports = options.exports === undefined ? 'exports not managed (no nfs-exports plugin, --add-export or --add-remove-all-exports)' : `exports ${options.dryRun ? `would be ${options.exports}` : options.exports}`;
  const lines = [`${rootdir} (${rootfs}): ${recovered}; ${exports}\n`];
  for (const j of jobs) lines.push(`  ${outcomeLabel(j.kind, options.dryRun).padEnd(11)} ${JSON.stringify(j.name)}: ${j.message}\n`);
  return lines.join('');
}

const SUMMARY_HELP = 'for cron and mail: one line per job that is news ("<outcome> "<dir>": <message>"), nothing when nothing happened; logs as with -q';

/** --summary: logs as with -q (errors only); not with --json. */
function summaryOptions(options: GlobalOptions, o: { json?: boolean; summary?: boolean }): GlobalOptions {
  if (o.summary && o.json) throw new UsageError('usage: give --summary or --json, not both');
  return o.summary ? { ...options, quiet: true } : options;
}

/** Whether nothing is at `path` (the operand of handle): a mistyped path, or one gone already. */
async function missing(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return false;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return true;
    throw error;
  }
}

function report(outcome: Outcome): number {
  const code = exitCodeFor(outcome);
  if (code !== EXIT.ok) say(outcome.kind === 'failed' || outcome.kind === 'refused' ? 'error' : 'notice', outcome.message);
  return code;
}

export async function main(argv: readonly string[]): Promise<number> {
  let code: number = EXIT.ok;
  // A closed stderr or stdout (`| head -1`, a dropped ssh session) never interrupts a job.
  ignoreBrokenPipes();
  const program = buildProgram((c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    const commanderCode = (error as { code?: string; exitCode?: number }).code;
    if (commanderCode === 'commander.helpDisplayed' || commanderCode === 'commander.version') return EXIT.ok;
    if (commanderCode?.startsWith('commander.')) return (error as { exitCode?: number }).exitCode === 0 ? EXIT.ok : EXIT.usage;
    say('error', oneLine(error));
    return error instanceof ConfigError ? EXIT.usage : EXIT.failed;
  }
  return code;
}
