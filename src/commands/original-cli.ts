/**
 * The original script's command line (what the user types is unchanged):
 *   zfs-dynamic-creator [options] <rootfs> <rootdir> <filename> <event>   (from incron)
 *   zfs-dynamic-creator [options] <rootfs> <rootdir>                      (maintenance)
 * turned into a config: the config file's root for <rootdir> when there is one,
 * else the default plugins, with the flags applied on top.
 */
import { DEFAULT_PLUGINS, type GlobalOptions } from '../app.js';
import { ConfigError, loadConfig, validateConfig, writeStdout, type Config, type OutcomeKind, type PluginSpec } from '../core/index.js';
import { outcomeLabel } from './reconcile.js';
import { EXIT, UsageError, closestCommand, report, stopSafely, withApp } from './shared.js';

export interface OriginalFlags {
  readonly delay?: number;
  readonly addExport?: boolean;
  readonly addRemoveAllExports?: boolean;
  readonly onlyDirsMatching?: string;
}

/** Sets options of plugin `name` in `specs` (adding the plugin before `before`, or at the end). */
export function withPluginOptions(
  specs: readonly PluginSpec[],
  name: string,
  patch: Record<string, unknown>,
  before?: string,
): PluginSpec[] {
  const out = [...specs];
  const index = out.findIndex((s) => (typeof s === 'string' ? s : s[0]) === name);
  if (index >= 0) {
    const spec = out[index]!;
    const current = typeof spec === 'string' ? {} : spec[1];
    out[index] = [name, { ...current, ...patch }];
    return out;
  }
  const at = before === undefined ? -1 : out.findIndex((s) => (typeof s === 'string' ? s : s[0]) === before);
  if (at >= 0) out.splice(at, 0, [name, patch]);
  else out.push([name, patch]);
  return out;
}

/** Whether an incron event ($%) is the creation of a directory. */
export function isDirectoryCreation(event: string): boolean {
  const parts = event.split(/[,|]/).map((p) => p.trim());
  return parts.includes('IN_CREATE') && parts.includes('IN_ISDIR');
}

export function originalConfig(rootfs: string, rootdir: string, flags: OriginalFlags, file: Config | undefined): Config {
  const dir = rootdir.length > 1 ? rootdir.replace(/\/+$/, '') : rootdir;
  const fromFile = file?.roots.find((r) => r.rootdir === dir);
  let plugins: PluginSpec[] = [...(fromFile?.plugins ?? DEFAULT_PLUGINS)];
  if (flags.onlyDirsMatching !== undefined) plugins = withPluginOptions(plugins, 'name-filter', { regex: flags.onlyDirsMatching }, 'zfs');
  if (flags.delay !== undefined) plugins = withPluginOptions(plugins, 'quiet-wait', { delaySeconds: flags.delay }, 'zfs');
  if (flags.addExport || flags.addRemoveAllExports) {
    const has = plugins.some((s) => (typeof s === 'string' ? s : s[0]) === 'nfs-exports');
    // The original flags edit /etc/exports, giving each filesystem the rootdir's clients.
    const patch: Record<string, unknown> = has ? {} : { mode: 'exports-file' };
    if (flags.addRemoveAllExports) patch.removeStale = true;
    plugins = withPluginOptions(plugins, 'nfs-exports', patch, 'syslog');
  }
  const raw = {
    ...(file ? { stateDir: file.stateDir, watch: file.watch } : {}),
    roots: [{ rootfs, rootdir: dir, plugins }],
  };
  return validateConfig(raw, file ? `${file.source} (with command-line options)` : 'command line', DEFAULT_PLUGINS, file?.baseDir);
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
  if (first === undefined)
    return `usage: zfs-dynamic-creator <command> … or zfs-dynamic-creator [options] <rootfs> <rootdir> [<filename> <event>]; ${hint}`;
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

/** The operands of the original command line, as commander gives them. */
export interface OriginalOperands {
  readonly rootfs: string | undefined;
  readonly rootdir: string | undefined;
  readonly filename: string | undefined;
  readonly event: string | undefined;
}

/**
 * The original command line: with <filename> and <event> (incron), converts that directory;
 * without, finishes the root's interrupted jobs and syncs its exports (maintenance). Returns the
 * exit code; `commands` are the program's commands (for "did you mean").
 */
export async function original(
  operands: OriginalOperands,
  commands: readonly string[],
  options: GlobalOptions,
  flags: OriginalFlags,
): Promise<number> {
  const { rootfs, rootdir, filename, event } = operands;
  const problem = notTheOriginalForm(
    [rootfs, rootdir].filter((x): x is string => x !== undefined),
    commands,
  );
  if (problem !== undefined || rootfs === undefined || rootdir === undefined)
    throw new UsageError(problem ?? 'usage: zfs-dynamic-creator [options] <rootfs> <rootdir> [<filename> <event>]');
  if (filename !== undefined && event === undefined) throw new ConfigError('usage: give both <filename> and <event>, or neither');
  if (event !== undefined && !isDirectoryCreation(event)) return EXIT.ok; // not a directory being created: ignored quietly
  const file = await loadConfig(options.config, DEFAULT_PLUGINS);
  const config = originalConfig(rootfs, rootdir, flags, file);
  return withApp(
    options,
    async (app) => {
      const engine = app.engines[0]!;
      if (filename === undefined) {
        // Like every run for a root: first finish (or undo) its interrupted jobs.
        const recovered = await engine.recoverRoot();
        await engine.sync();
        // What it did, like reconcile's summary (not with -q: cron mails any output).
        if (!options.quiet)
          writeStdout(
            maintenanceSummary(
              engine.context.rootdir,
              engine.context.rootfs,
              recovered.map((r) => ({ name: r.name, kind: r.outcome.kind, message: r.outcome.message })),
              {
                exports: engine.plugins.some((p) => p.name === 'nfs-exports')
                  ? flags.addRemoveAllExports
                    ? 'made to match the filesystems'
                    : 'added where missing'
                  : undefined,
                dryRun: options.dryRun ?? false,
              },
            ),
          );
        return recovered.some((r) => r.outcome.kind === 'failed') ? EXIT.failed : EXIT.ok;
      }
      const outcome = await engine.handle(filename, { signal: stopSafely(), recoverRoot: true });
      return report(outcome);
    },
    config,
  );
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
  const exports =
    options.exports === undefined
      ? 'exports not managed (no nfs-exports plugin, --add-export or --add-remove-all-exports)'
      : `exports ${options.dryRun ? `would be ${options.exports}` : options.exports}`;
  const lines = [`${rootdir} (${rootfs}): ${recovered}; ${exports}\n`];
  for (const j of jobs) lines.push(`  ${outcomeLabel(j.kind, options.dryRun).padEnd(11)} ${JSON.stringify(j.name)}: ${j.message}\n`);
  return lines.join('');
}
