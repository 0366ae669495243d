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
 * COMMAND_HELP below; each command's logic is in src/commands/<command>.ts (the original
 * command line's in src/commands/original-cli.ts).
 */
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { GlobalOptions } from './app.js';
import { ConfigError, ignoreBrokenPipes, oneLine, ownVersion, writeStderr, writeStdout } from './core/index.js';
import { runtimeNote } from './core/embedded.js';
import { handle } from './commands/handle.js';
import { listPlugins } from './commands/list-plugins.js';
import { original, type OriginalFlags } from './commands/original-cli.js';
import { reconcile } from './commands/reconcile.js';
import { EXIT, SUMMARY_HELP, UsageError, closestCommand, leaveWorkingDirectory, say, summaryOptions, withApp } from './commands/shared.js';
// The other commands are imported when they run: the incron path (a run that rejects a name, for
// every directory made in a root) loads only what it needs (not the daemon, doctor, status, history).

export { routeProcessWarnings } from './core/index.js';

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
      [
        'zfs-dynamic-creator --add-export --delay=30 tank/runs /tank/runs run42 IN_CREATE,IN_ISDIR',
        "the original script's incron invocation: convert /tank/runs/run42 and export it",
      ],
      [
        'zfs-dynamic-creator --add-remove-all-exports tank/runs /tank/runs',
        'maintenance: finish interrupted jobs, make the exports match the filesystems; prints a summary',
      ],
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
      [
        'zfs-dynamic-creator handle --no-wait /tank/runs/run42',
        'return once it is live and exported; the grace period and the removal of the original are left to the next run',
      ],
      [
        'zfs-dynamic-creator handle --event=IN_CREATE,IN_ISDIR /tank/runs/run42',
        'from incron (trusted roots only: incron runs the line through a shell)',
      ],
    ],
    exits: [
      [EXIT.ok, 'converted, deliberately skipped, or handled by another process; with --event, a directory gone before its turn'],
      [EXIT.deferred, 'deferred: not quiet in time, or stopped by SIGTERM and rolled back; it will be tried again'],
      [EXIT.usage, 'usage or configuration error, a mistyped path among them ("no such directory", said once); restarting does not help'],
      [
        EXIT.failed,
        'failed, or refused (a name ZFS forbids, over the quota: remembered, so sweeps do not try it again until the directory or the config changes; handle always tries); a one-line reason on stderr',
      ],
    ],
  },
  recover: {
    examples: [
      ['zfs-dynamic-creator recover', "finish or undo every interrupted job of the config's roots and of roots only the journal knows"],
      ['zfs-dynamic-creator recover --json', 'the same, the summary as JSON'],
    ],
    exits: [
      [EXIT.ok, 'nothing left to finish, or everything finished or undone'],
      USAGE_EXIT,
      [EXIT.failed, 'a job could not be finished or undone (named on stdout and stderr)'],
    ],
  },
  reconcile: {
    examples: [
      ['zfs-dynamic-creator reconcile', 'sweep every configured root once (what the timer runs)'],
      ['zfs-dynamic-creator reconcile --root /tank/runs', 'sweep one root (the incrontab line: IN_CREATE,IN_ONLYDIR on the root)'],
      ['zfs-dynamic-creator --dry-run reconcile', 'list what would be converted ("would convert")'],
      ['zfs-dynamic-creator reconcile --summary', 'from cron: one line per job that is news, nothing (no mail) when nothing happened'],
    ],
    exits: [
      [
        EXIT.ok,
        'every root swept (deferred directories are tried again at the next sweep; refused ones, said once and listed by status, when they or the config change)',
      ],
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
      [
        'zfs-dynamic-creator status',
        "a dead daemon: 'daemon not running (pid N, last seen T)'; refused directories: 'refused \"NAME\" needs attention: REASON'",
      ],
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
    exits: [
      [
        EXIT.ok,
        "the config is valid: its keys, its plugins and their options, its files and stateDir in trusted places, each root's dataset mounted at its rootdir, the ZFS property names",
      ],
      [EXIT.usage, 'the config is not valid: every problem on its own line, with "did you mean" for a mistyped key or option'],
      [EXIT.failed, "a root's dataset is not mounted at its rootdir (the config may be right and the pool not imported yet)"],
    ],
  },
  help: {
    examples: [
      ['zfs-dynamic-creator help', "the program's help"],
      ['zfs-dynamic-creator help handle', "handle's help (the same as handle --help)"],
    ],
    exits: [
      [EXIT.ok, 'shown'],
      [EXIT.usage, 'no such command'],
    ],
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
  command.option(
    '--config <path>',
    `configuration file (default: $${CONFIG_ENV}, else /etc/zfs-dynamic-creator/config.{yaml,yml,json,js,mjs,cjs}; never searched for in the working directory)`,
  );
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
  return {
    config: config !== undefined ? resolve(config) : undefined,
    dryRun: o.dryRun ?? false,
    verbose: o.verbose ?? false,
    quiet: o.quiet ?? false,
  };
}

/** The program: the original command line and every command, with their options and help. */
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
    .showHelpAfterError("(run 'zfs-dynamic-creator help <command>' for its options, examples and exit codes)");
  addOriginal(program, setExit);
  addJobCommands(program, setExit);
  addViewCommands(program, setExit);
  addHelpCommand(program);
  for (const command of program.commands) {
    const name = command.name();
    command.addHelpText('after', () => helpEpilogue(name));
  }
  return program;
}

/** The original command line (commands/original-cli.ts). */
function addOriginal(program: Command, setExit: (code: number) => void): void {
  program
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
  program.action(
    async (
      rootfs: string | undefined,
      rootdir: string | undefined,
      filename: string | undefined,
      event: string | undefined,
      _o: unknown,
      command: Command,
    ) => {
      const commands = program.commands.map((c) => c.name());
      setExit(await original({ rootfs, rootdir, filename, event }, commands, globals(command), command.opts<OriginalFlags>()));
    },
  );
}

/** The commands that run jobs: handle, recover, reconcile, watch. */
function addJobCommands(program: Command, setExit: (code: number) => void): void {
  addGlobal(
    program
      .command('handle')
      .description('convert one directory, a direct child of a configured root')
      .argument('<dir>', 'the directory to convert'),
  )
    .option('--event <mask>', 'the incron event ($%): anything but IN_CREATE,IN_ISDIR is ignored quietly')
    .option(
      '--no-wait',
      'return once the new filesystem is live and published; the grace period and removal of the original are left to the next run for this root (reconcile, the daemon, recover)',
    )
    .action(async (dir: string, o: { event?: string; wait: boolean }, command: Command) => {
      setExit(await handle(globals(command), dir, o));
    });

  addGlobal(
    program
      .command('recover')
      .description(
        'finish or undo every interrupted job (without a config: the jobs the journal recorded, with their own roots and plugins)',
      ),
  )
    .option('--json', 'print the summary as JSON')
    .option('--summary', SUMMARY_HELP)
    .action(async (o: { json?: boolean; summary?: boolean }, command: Command) => {
      const options = summaryOptions(globals(command), o);
      const { recoverCommand } = await import('./commands/recover.js');
      setExit(await recoverCommand(options, o));
    });

  addGlobal(program.command('reconcile').description('sweep every root: convert what was missed, finish interrupted jobs, sync exports'))
    .option('--json', 'print the summary as JSON')
    .option('--summary', SUMMARY_HELP)
    .option('--root <rootdir>', 'sweep only this configured root (for incron: the line passes no directory name)')
    .action(async (o: { json?: boolean; summary?: boolean; root?: string }, command: Command) => {
      const options = summaryOptions(globals(command), o);
      setExit(
        await withApp(options, (app) =>
          reconcile(app, {
            json: o.json ?? false,
            summary: o.summary ?? false,
            ...(o.root !== undefined ? { root: resolve(o.root) } : {}),
          }),
        ),
      );
    });

  addGlobal(program.command('watch').description('watch every root and convert new directories (the daemon)')).action(
    async (_o: unknown, command: Command) => {
      const options = globals(command);
      leaveWorkingDirectory();
      const { watch } = await import('./commands/watch.js');
      setExit(await watch(options));
    },
  );
}

/** The commands that show or check: status, list-plugins, history, doctor, check-config. */
function addViewCommands(program: Command, setExit: (code: number) => void): void {
  addGlobal(program.command('status').description('show interrupted and running jobs'))
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }, command: Command) => {
      const { status } = await import('./commands/status.js');
      setExit(await withApp(globals(command), (app) => status(app, { json: o.json ?? false })));
    });

  addGlobal(program.command('list-plugins').description('show, for each root, every plugin, where it came from, and the hooks it taps'))
    .option('--json', 'print as JSON (with the options)')
    .option('--options', "show each plugin's effective options: defaults applied, the root's overrides merged in")
    .action(async (o: { json?: boolean; options?: boolean }, command: Command) => {
      setExit(await withApp(globals(command), (app) => listPlugins(app, { json: o.json ?? false, options: o.options ?? false })));
    });

  addGlobal(
    program
      .command('history')
      .description("list conversions (when, by which version, files, bytes, duration) from the datasets' own properties"),
  )
    .option('--json', 'print as JSON')
    .action(async (o: { json?: boolean }, command: Command) => {
      const { history } = await import('./commands/history.js');
      setExit(await withApp(globals(command), (app) => history(app, { json: o.json ?? false })));
    });

  addGlobal(
    program
      .command('doctor')
      .description('check the config, the pool, the binaries and the state before it matters; exit 0 only when nothing failed'),
  )
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
      .description(
        'check the configuration and exit: syntax, keys, plugins and their options, trusted places (what the systemd units run first)',
      ),
  )
    .option('--options', "also show each root's plugins with their effective options (the root's overrides merged in)")
    .option('--json', 'print the result as JSON: ok and every problem found')
    .action(async (o: { options?: boolean; json?: boolean }, command: Command) => {
      const options = globals(command);
      const { checkConfig } = await import('./commands/check-config.js');
      setExit(await checkConfig(options, o));
    });
}

function addHelpCommand(program: Command): void {
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
        const near = closestCommand(
          name,
          program.commands.map((c) => c.name()),
        );
        throw new UsageError(
          `unknown command ${JSON.stringify(name)}${near !== undefined ? ` (did you mean ${near}?)` : ''}; the commands: ${program.commands.map((c) => c.name()).join(', ')}`,
        );
      }
      found.outputHelp();
    });
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
