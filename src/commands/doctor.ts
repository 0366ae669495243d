/**
 * doctor: everything that can be checked before it matters, one line per check.
 *
 *   ok     the check passed
 *   warn   works, but deserves a look (an interrupted job, no syslog socket)
 *   info   for the record (incron)
 *   FAIL   a conversion would fail, or the tool would not start
 *
 * Exit 0 when nothing failed (warnings allowed), 1 otherwise (2 for a usage error, from the CLI).
 * The runner makes the checks that belong to no plugin (the user, the config, the stateDir, each
 * root's owner and mode, flock, incron, metrics, the journal, refusals); each plugin makes its own
 * through the `doctor` hook (src/core/reports.ts): the builtins' are plugins/<name>/doctor.ts.
 * Nothing is changed, but for what a plugin must try to know (the zfs plugin tries the configured
 * property values on a throwaway dataset), and never in a dry run or check-config.
 */
import { constants } from 'node:fs';
import { access, lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DEFAULT_PLUGINS, type GlobalOptions } from '../app.js';
import {
  ConfigError,
  Journal,
  RootEngine,
  humanTime,
  isLocked,
  loadConfig,
  loadPlugins,
  oneLine,
  quoteName,
  rootModeProblem,
  type Config,
  type LoadedPlugin,
} from '../core/index.js';
import { optionsLocation, type PluginOrigin } from '../core/config.js';
import { DOCTOR_TIMEOUT_MS, checkBinary, type CheckStatus, type DoctorCheck, type DoctorContext } from '../core/reports.js';
import { prepareStateDir } from '../core/trust.js';
import { claimedLine, goneLine, goneRoots, readRootClaim } from '../core/roots.js';
import { listRefusals } from '../core/refusals.js';
import { shellWord } from './status.js';
import { envelope, type Envelope } from './envelope.js';

export type { CheckStatus };

export interface Check {
  /** What was checked: "config", "stateDir", "binary rsync", "roots[0].mount", … */
  readonly check: string;
  readonly status: CheckStatus;
  /** One line; names the file and the key where there is one. */
  readonly detail: string;
}

export type DoctorReport = Envelope<'doctor', DoctorBody>;

export interface DoctorBody {
  readonly config: string | null;
  /** Nothing failed (warnings allowed): what the exit status says. */
  readonly ok: boolean;
  readonly checks: Check[];
}

interface Root {
  readonly index: number;
  readonly rootfs: string;
  readonly rootdir: string;
  readonly engine: RootEngine;
  /** The root's plugins as loaded (options parsed, defaults applied), in config order. */
  readonly plugins: readonly LoadedPlugin[];
  /** Where each is written (RootConfig.origins). */
  readonly origins?: readonly PluginOrigin[] | undefined;
}

export class Doctor {
  readonly checks: Check[] = [];
  private config: Config | undefined;
  private roots: Root[] = [];
  /** The keys plugins asked DoctorContext.once() about: checks of the machine are made once. */
  private readonly asked = new Set<string>();

  /** probe: false for check-config and a dry run: nothing is created, not even a throwaway dataset. */
  constructor(
    private readonly options: GlobalOptions,
    private readonly probe = true,
  ) {}

  /**
   * The checks that change nothing (check-config): the config, its plugins and options, the
   * trusted places, and what each root's plugins check of the config (the zfs plugin: the root's
   * dataset mounted at its rootdir, the ZFS property names).
   */
  async staticChecks(): Promise<Check[]> {
    try {
      if (await this.loadConfig()) {
        for (const root of this.roots) {
          await this.pluginChecks(root, 'config', undefined);
          await this.owner(root);
        }
      }
    } finally {
      await this.close();
    }
    return this.checks;
  }

  private add(check: string, status: CheckStatus, detail: string): void {
    this.checks.push({ check, status, detail });
  }

  /** A check as a plugin gives it: its fix, shell-quoted, after the message. */
  private report(c: DoctorCheck): void {
    this.add(c.name, c.status, c.fix ? `${c.message}: ${c.fix.map(shellWord).join(' ')}` : c.message);
  }

  async run(): Promise<DoctorReport> {
    try {
      this.user();
      const stateDirTrusted = await this.loadConfig();
      this.report(
        (await checkBinary({ name: 'flock', command: 'flock', why: "every job's lock is taken with it", versionArgs: ['--version'] }))
          .check,
      );
      for (const root of this.roots) {
        await this.owner(root);
        await this.rootMode(root);
        await this.pluginChecks(root, 'all', stateDirTrusted ? await this.journalled(root) : undefined);
      }
      await this.incron();
      await this.metrics();
      if (stateDirTrusted) await this.jobs();
      if (stateDirTrusted) await this.refusals();
    } finally {
      await this.close();
    }
    return envelope('doctor', {
      config: this.config?.source ?? null,
      ok: !this.checks.some((c) => c.status === 'fail'),
      checks: this.checks,
    });
  }

  private async close(): Promise<void> {
    for (const root of this.roots) await root.engine.hooks.close.promise().catch(() => undefined);
  }

  private user(): void {
    const uid = typeof process.geteuid === 'function' ? process.geteuid() : 0;
    if (uid === 0) this.add('user', 'ok', 'running as root');
    else
      this.add(
        'user',
        'fail',
        `running as uid ${uid}: zfs-dynamic-creator must run as root (it creates and mounts datasets and moves users' directories)`,
      );
  }

  /** The config, its plugins per root (options validated), and the stateDir. Returns whether the stateDir may be read. */
  private async loadConfig(): Promise<boolean> {
    try {
      this.config = await loadConfig(this.options.config, DEFAULT_PLUGINS);
    } catch (error) {
      for (const problem of problemsOf(error)) this.add('config', 'fail', problem);
      return false;
    }
    const config = this.config;
    if (config === undefined) {
      this.add('config', 'fail', 'no configuration found: give --config PATH or create /etc/zfs-dynamic-creator/config.yaml');
      return false;
    }
    this.add('config', 'ok', `${config.source}: valid, ${config.roots.length} root(s)`);
    for (const notice of config.notices) this.add('config', 'warn', notice);
    let trusted = false;
    try {
      const real = await prepareStateDir(config.stateDir, { create: false });
      const exists = await lstat(real).then(
        () => true,
        () => false,
      );
      this.add(
        'stateDir',
        'ok',
        exists
          ? `${quoteName(config.stateDir)}: trusted (root's alone)`
          : `${quoteName(config.stateDir)} does not exist yet; its parent is trusted, and the first run creates it (mode 0700)`,
      );
      trusted = true;
    } catch (error) {
      this.add('stateDir', 'fail', `config ${config.source}: ${oneLine(error)}`);
    }
    for (const index of config.roots.keys()) await this.loadRoot(config, index);
    return trusted;
  }

  /** One root's plugins, loaded into hooks of its own (a dry run's: they change nothing). */
  private async loadRoot(config: Config, index: number): Promise<void> {
    const root = config.roots[index]!;
    const rootdir = await realpath(root.rootdir).catch(() => root.rootdir);
    const engine = new RootEngine({
      rootfs: root.rootfs,
      rootdir,
      stateDir: config.stateDir,
      dryRun: true,
      sinks: [],
      plugins: root.plugins,
      baseDir: config.baseDir,
    });
    try {
      const plugins = await loadPlugins(root.plugins, {
        hooks: engine.hooks,
        root: { rootfs: root.rootfs, rootdir },
        log: engine.log,
        dryRun: true,
        stateDir: config.stateDir,
        baseDir: config.baseDir,
        where: `config ${config.source}: roots[${index}].plugins`,
        ...(root.origins ? { origins: { file: `config ${config.source}`, of: root.origins } } : {}),
      });
      engine.plugins = plugins;
      this.roots.push({ index, rootfs: root.rootfs, rootdir, engine, plugins, origins: root.origins });
      this.add(`roots[${index}].plugins`, 'ok', `${rootdir}: ${plugins.map((p) => p.name).join(', ')}`);
    } catch (error) {
      for (const problem of problemsOf(error)) this.add(`roots[${index}].plugins`, 'fail', problem);
    }
  }

  /** What the root's plugins check (the doctor hook), each line as they give it. */
  private async pluginChecks(root: Root, scope: DoctorContext['scope'], journalled: ReadonlySet<string> | undefined): Promise<void> {
    const label = `roots[${root.index}]`;
    let checks: DoctorCheck[];
    try {
      checks = await root.engine.hooks.doctor.promise([], this.context(root, scope, journalled));
    } catch (error) {
      this.add(`${label}.doctor`, 'fail', `a plugin's doctor check failed: ${oneLine(error)}`);
      return;
    }
    for (const c of checks) this.report(c);
  }

  private context(root: Root, scope: DoctorContext['scope'], journalled: ReadonlySet<string> | undefined): DoctorContext {
    const source = this.config!.source;
    const label = `roots[${root.index}]`;
    const originOf = (plugin: string): PluginOrigin => {
      const i = root.plugins.findIndex((p) => p.name === plugin);
      return root.origins?.[i] ?? { spec: i < 0 ? `${label}.plugins` : `${label}.plugins[${i}]` };
    };
    return {
      ...root.engine.context,
      label,
      where: `config ${source}: ${label}`,
      scope,
      probe: this.probe,
      timeoutMs: DOCTOR_TIMEOUT_MS,
      journalled,
      recover: this.recover(),
      pluginAt: (plugin) => originOf(plugin).spec,
      optionAt: (plugin, path) => `config ${source}: ${optionsLocation(originOf(plugin), path)}`,
      once: (key) => {
        if (this.asked.has(key)) return false;
        this.asked.add(key);
        return true;
      },
    };
  }

  /** The command that finishes interrupted jobs under this config. */
  private recover(): string[] {
    const source = this.config!.source;
    return ['zfs-dynamic-creator', 'recover', ...(source.startsWith('/') ? ['--config', source] : [])];
  }

  /** The names of the root's jobs in the journal. */
  private async journalled(root: Root): Promise<ReadonlySet<string>> {
    return new Set((await new Journal(this.config!.stateDir).list(root.rootdir)).map((r) => r.name));
  }

  /** Served by one stateDir: another one's claim would make every run refuse the root. */
  private async owner(root: Root): Promise<void> {
    const config = this.config!;
    const claim = await readRootClaim(root.rootdir);
    if (claim !== undefined && claim.stateDir !== (await realpath(config.stateDir).catch(() => config.stateDir))) {
      this.add(`roots[${root.index}].owner`, 'fail', claimedLine(root.rootdir, claim, config.stateDir));
    }
  }

  /** The root lets nobody else rename what the tool makes in it (rootModeProblem). */
  private async rootMode(root: Root): Promise<void> {
    const s = await stat(root.rootdir).catch(() => undefined);
    if (s === undefined) return;
    const problem = rootModeProblem(root.rootdir, s, process.getuid?.() ?? 0);
    const mode = (s.mode & 0o7777).toString(8).padStart(4, '0');
    this.add(
      `roots[${root.index}].mode`,
      problem === undefined ? 'ok' : 'fail',
      problem ?? `${quoteName(root.rootdir)} is mode ${mode}, owned by uid ${s.uid}: nobody else can rename what the tool makes in it`,
    );
  }

  /** The Prometheus textfile, when configured: its directory must exist and be a directory root can write to. */
  private async metrics(): Promise<void> {
    const textfile = this.config?.metrics?.textfile;
    if (textfile === undefined) return;
    const dir = dirname(textfile);
    const where = `config ${this.config!.source}: metrics.textfile`;
    try {
      const s = await stat(dir);
      if (!s.isDirectory()) {
        this.add('metrics', 'fail', `${where}: ${dir} is not a directory`);
        return;
      }
      await access(dir, constants.W_OK);
    } catch (error) {
      this.add(
        'metrics',
        'fail',
        `${where}: ${dir}: ${(error as NodeJS.ErrnoException).code ?? oneLine(error)} (node_exporter's textfile directory must exist and be writable)`,
      );
      return;
    }
    this.add('metrics', 'ok', `${textfile}: its directory is writable; counters in the stateDir's metrics.json`);
  }

  /** incron is one way to run the tool: said for the record, never a failure. */
  private async incron(): Promise<void> {
    const pids: number[] = [];
    for (const entry of await readdir('/proc').catch(() => [] as string[])) {
      if (!/^\d+$/.test(entry)) continue;
      const comm = await readFile(`/proc/${entry}/comm`, 'utf8').catch(() => '');
      if (comm.trim() === 'incrond') pids.push(Number(entry));
    }
    const lines: string[] = [];
    for (const name of await readdir('/etc/incron.d').catch(() => [] as string[])) {
      const text = await readFile(join('/etc/incron.d', name), 'utf8').catch(() => '');
      for (const [i, line] of text.split('\n').entries()) {
        if (
          line.includes('zfs-dynamic-creator') &&
          this.roots.some((r) => line.startsWith(`${r.rootdir} `) || line.startsWith(`${r.rootdir}\t`))
        )
          lines.push(`/etc/incron.d/${name}:${i + 1}`);
      }
    }
    const running = pids.length > 0 ? `incrond runs (pid ${pids.join(', ')})` : 'incrond does not run';
    const table = lines.length > 0 ? `a line for a configured root in ${lines.join(', ')}` : 'no /etc/incron.d line for a configured root';
    this.add(
      'incron',
      'info',
      `${running}; ${table}; incron drops directory events in bursts, so run the daemon (watch) or a periodic reconcile to sweep what it misses`,
    );
  }

  /** Interrupted jobs in the journal (what the plugins found that it does not know, they said). */
  private async jobs(): Promise<void> {
    const config = this.config!;
    const found = this.checks.filter((c) => c.check === 'jobs').length;
    const journal = new Journal(config.stateDir);
    const recover = this.recover().map(shellWord).join(' ');
    let problems = 0;
    for (const root of this.roots) {
      const records = await journal.list(root.rootdir);
      for (const r of records) {
        if (await isLocked(config.stateDir, r.id)) continue;
        if (r.status === 'cleanup-pending') {
          this.add(
            'jobs',
            'info',
            `${quoteName(`${root.rootdir}/${r.name}`)}: live and published; its cleanup was left to the next run for the root (handle --no-wait)${r.aside ? `, the original kept at ${quoteName(r.aside)} until then` : ''}; or run: ${recover}`,
          );
          continue;
        }
        problems += 1;
        this.add(
          'jobs',
          'warn',
          `${quoteName(`${root.rootdir}/${r.name}`)}: interrupted in phase ${r.phase}${r.committed ? ' (past its commit point)' : ''}${r.aside ? `, the original kept at ${quoteName(r.aside)}` : ''}${r.error ? `: ${r.error}` : ''}; finish it with: ${recover}`,
        );
      }
    }
    problems += await this.otherRoots();
    if (problems + found === 0) this.add('jobs', 'ok', 'no interrupted job, no leftover');
  }

  /** Roots with jobs in the journal that are gone or not in the config: one line each. */
  private async otherRoots(): Promise<number> {
    const config = this.config!;
    const configured = new Set(this.roots.map((r) => r.rootdir));
    const notes = new Map((await goneRoots(config.stateDir)).map((n) => [n.rootdir, n]));
    const byRoot = new Map<string, number>();
    for (const r of await new Journal(config.stateDir).list()) byRoot.set(r.rootdir, (byRoot.get(r.rootdir) ?? 0) + 1);
    let problems = 0;
    for (const rootdir of new Set([...notes.keys(), ...[...byRoot.keys()].filter((d) => !configured.has(d))])) {
      const reason =
        notes.get(rootdir)?.reason ??
        (await lstat(rootdir).then(
          () => undefined,
          () => `${quoteName(rootdir)} does not exist`,
        ));
      problems += 1;
      if (reason !== undefined) this.add('root gone', 'warn', goneLine(rootdir, reason, byRoot.get(rootdir) ?? 0));
      else
        this.add(
          'jobs',
          'warn',
          `${quoteName(rootdir)}: not in the configuration; ${byRoot.get(rootdir)} job(s) in the journal, which 'zfs-dynamic-creator recover' finishes`,
        );
    }
    return problems;
  }

  /** Directories refused for good until they or the config change: they need someone's attention. */
  private async refusals(): Promise<void> {
    const all = await listRefusals(join(this.config!.stateDir, 'refusals'));
    const roots = new Set(this.roots.map((r) => r.rootdir));
    const ours = all.filter((r) => roots.has(r.rootdir));
    for (const r of ours)
      this.add(
        'refusals',
        'warn',
        `${quoteName(`${r.rootdir}/${r.name}`)} needs attention: ${r.reason} (refused at ${humanTime(r.since)}; tried again once the directory or the config changes, or by: zfs-dynamic-creator handle ${shellWord(`${r.rootdir}/${r.name}`)})`,
      );
    if (ours.length === 0) this.add('refusals', 'ok', 'no directory refused');
  }
}

/** Every mistake a ConfigError lists, or the error's one line. */
function problemsOf(error: unknown): readonly string[] {
  return error instanceof ConfigError ? error.problems : [oneLine(error)];
}

const LABEL: Record<CheckStatus, string> = { ok: 'ok', warn: 'warn', info: 'info', fail: 'FAIL' };

export async function doctor(options: GlobalOptions, output: { json: boolean }): Promise<number> {
  // A dry run changes nothing: the property values are not tried on a probe dataset.
  const report = await new Doctor(options, !options.dryRun).run();
  if (output.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const width = Math.max(...report.checks.map((c) => c.check.length));
    const lines = report.checks.map((c) => `${LABEL[c.status].padEnd(5)} ${c.check.padEnd(width)}  ${c.detail}`);
    const count = (s: CheckStatus): number => report.checks.filter((c) => c.status === s).length;
    lines.push(
      `${report.ok ? 'all checks passed' : 'some checks FAILED'}: ${count('ok')} ok, ${count('warn')} warning(s), ${count('fail')} failed`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.ok ? 0 : 1;
}
