/**
 * doctor: everything that can be checked before it matters, one line per check.
 *
 *   ok     the check passed
 *   warn   works, but deserves a look (an interrupted job, no syslog socket)
 *   info   for the record (incron)
 *   FAIL   a conversion would fail, or the tool would not start
 *
 * Exit 0 when nothing failed (warnings allowed), 1 otherwise (2 for a usage error, from the CLI).
 * Nothing is changed, with one exception: the configured ZFS property values are tried on a
 * throwaway child dataset (<rootfs>/.zdc-doctor-<random>, unmounted, destroyed at once), since
 * only the pool can say whether it accepts a value.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, lstat, readdir, readFile, realpath, stat } from 'node:fs/promises';
import { delimiter, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_PLUGINS, type GlobalOptions } from '../app.js';
import {
  CommandError,
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
  run,
  type Config,
  type LoadedPlugin,
} from '../core/index.js';
import { didYouMean } from '../core/errors.js';
import { optionsLocation, type PluginOrigin } from '../core/config.js';
import { prepareStateDir } from '../core/trust.js';
import { claimedLine, goneLine, goneRoots, readRootClaim } from '../core/roots.js';
import { listRefusals } from '../core/refusals.js';
import { detectZfs } from '../../plugins/zfs/implementation.js';
import { REQUIRED_RSYNC, checkRsync } from '../../plugins/rsync/version.js';
import { PROP_STATE } from '../../plugins/zfs/zfs.js';
import { CLIENT_TOKEN, clientsOf, parseExports } from '../../plugins/nfs-exports/exports.js';
import { shellWord } from './status.js';
import { envelope, type Envelope } from './envelope.js';

export type CheckStatus = 'ok' | 'warn' | 'info' | 'fail';

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

/** No external command may hang the doctor (a wedged zfs daemon is a finding, not a hang). */
const LIMIT = { timeoutMs: 60_000 } as const;

/** Properties the zfs plugin sets itself on every new dataset: a configured value is ignored. */
const SET_BY_THE_TOOL = new Set(['mountpoint']);

interface Root {
  readonly index: number;
  readonly rootfs: string;
  readonly rootdir: string;
  /** The root's plugins as loaded (options parsed, defaults applied), in config order. */
  readonly plugins: readonly LoadedPlugin[];
  /** Where each is written (RootConfig.origins). */
  readonly origins?: readonly PluginOrigin[] | undefined;
}

const optionsOf = (p: LoadedPlugin): Record<string, unknown> => (typeof p.options === 'object' && p.options !== null ? (p.options as Record<string, unknown>) : {});
/** The zfs command a root's zfs plugin runs. */
const zfsOf = (root: Root): string => stringOption(root.plugins.find((p) => p.name === 'zfs'), 'command', 'zfs');
const stringOption = (p: LoadedPlugin | undefined, key: string, fallback: string): string => {
  const value = p ? optionsOf(p)[key] : undefined;
  return typeof value === 'string' ? value : fallback;
};

/** The first of a root's plugins by name, with where it is written and where one of its options is. */
function pluginOf(root: Root, name: string): { plugin: LoadedPlugin; at: string; key: (path: readonly string[]) => string } | undefined {
  const i = root.plugins.findIndex((p) => p.name === name);
  if (i < 0) return undefined;
  const origin = root.origins?.[i] ?? { spec: `roots[${root.index}].plugins[${i}]` };
  return { plugin: root.plugins[i]!, at: origin.spec, key: (path) => optionsLocation(origin, path) };
}

/** Where a command is: its path, or undefined when it is not found (PATH as this process has it). */
export async function which(command: string): Promise<string | undefined> {
  const candidates = command.includes('/') ? [command] : (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((d) => join(d, command));
  for (const candidate of candidates) {
    try {
      await access(candidate, constants.X_OK);
      if ((await stat(candidate)).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

async function firstLine(command: string, args: readonly string[]): Promise<string | undefined> {
  try {
    const r = await run(command, args, LIMIT);
    return `${r.stdout}\n${r.stderr}`.split('\n').map((l) => l.trim()).find(Boolean);
  } catch {
    return undefined;
  }
}

function commandFailure(error: unknown): string {
  if (error instanceof CommandError) return (error.stderr.trim().split('\n')[0] ?? '') || oneLine(error);
  return oneLine(error);
}

export class Doctor {
  readonly checks: Check[] = [];
  private config: Config | undefined;
  private roots: Root[] = [];
  private engines: RootEngine[] = [];

  /** probe: false for check-config and a dry run: nothing is created, not even a throwaway dataset. */
  constructor(
    private readonly options: GlobalOptions,
    private readonly probe = true,
  ) {}

  /**
   * The checks that change nothing (check-config): the config, its plugins and options, the
   * trusted places, each root's dataset mounted at its rootdir, and the ZFS property names.
   */
  async staticChecks(): Promise<Check[]> {
    try {
      if (await this.loadConfig()) for (const root of this.roots) if (await this.mount(root)) await this.properties(root);
    } finally {
      for (const engine of this.engines) await engine.hooks.close.promise().catch(() => undefined);
    }
    return this.checks;
  }

  private add(check: string, status: CheckStatus, detail: string): void {
    this.checks.push({ check, status, detail });
  }

  async run(): Promise<DoctorReport> {
    try {
      this.user();
      const stateDirTrusted = await this.loadConfig();
      await this.binaries();
      for (const root of this.roots) {
        const mounted = await this.mount(root);
        await this.rootMode(root);
        if (mounted) await this.properties(root);
      }
      await this.syslog();
      await this.exports();
      await this.incron();
      await this.metrics();
      if (stateDirTrusted) await this.jobs();
      if (stateDirTrusted) await this.refusals();
    } finally {
      for (const engine of this.engines) await engine.hooks.close.promise().catch(() => undefined);
    }
    return envelope('doctor', {
      config: this.config?.source ?? null,
      ok: !this.checks.some((c) => c.status === 'fail'),
      checks: this.checks,
    });
  }

  private user(): void {
    const uid = typeof process.geteuid === 'function' ? process.geteuid() : 0;
    if (uid === 0) this.add('user', 'ok', 'running as root');
    else this.add('user', 'fail', `running as uid ${uid}: zfs-dynamic-creator must run as root (it creates and mounts datasets and moves users' directories)`);
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
    let trusted = false;
    try {
      const real = await prepareStateDir(config.stateDir, { create: false });
      const exists = await lstat(real).then(() => true, () => false);
      this.add('stateDir', 'ok', exists ? `${quoteName(config.stateDir)}: trusted (root's alone)` : `${quoteName(config.stateDir)} does not exist yet; its parent is trusted, and the first run creates it (mode 0700)`);
      trusted = true;
    } catch (error) {
      this.add('stateDir', 'fail', `config ${config.source}: ${oneLine(error)}`);
    }
    for (const [index, root] of config.roots.entries()) {
      const rootdir = await realpath(root.rootdir).catch(() => root.rootdir);
      const engine = new RootEngine({ rootfs: root.rootfs, rootdir, stateDir: config.stateDir, dryRun: true, sinks: [], plugins: root.plugins, baseDir: config.baseDir });
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
        this.engines.push(engine);
        this.roots.push({ index, rootfs: root.rootfs, rootdir, plugins, origins: root.origins });
        this.add(`roots[${index}].plugins`, 'ok', `${rootdir}: ${plugins.map((p) => p.name).join(', ')}`);
      } catch (error) {
        for (const problem of problemsOf(error)) this.add(`roots[${index}].plugins`, 'fail', problem);
      }
    }
    return trusted;
  }

  private async binary(name: string, command: string, why: string, version: (path: string) => Promise<string | undefined>, missing: CheckStatus = 'fail'): Promise<string | undefined> {
    const path = await which(command);
    if (path === undefined) {
      this.add(`binary ${name}`, missing, `${command}: not found in PATH (${process.env.PATH ?? ''}); ${why}`);
      return undefined;
    }
    const v = await version(path);
    this.add(`binary ${name}`, 'ok', `${path}${v ? `: ${v}` : ''}`);
    return path;
  }

  private async binaries(): Promise<void> {
    const uses = (name: string): ReturnType<typeof pluginOf> => this.roots.map((r) => pluginOf(r, name)).find((p) => p !== undefined);
    const zfsPlugin = uses('zfs');
    const zfsCommand = stringOption(zfsPlugin?.plugin, 'command', 'zfs');
    const zfs = await this.binary('zfs', zfsCommand, 'every root needs it', async () => undefined);
    if (zfs !== undefined) {
      try {
        const impl = await detectZfs(zfsCommand);
        this.add('zfs implementation', impl.kind === 'unknown' ? 'warn' : 'ok', impl.summary);
      } catch (error) {
        this.add('zfs implementation', 'fail', `${zfsCommand} does not answer: ${commandFailure(error)}`);
      }
    }
    await this.binary('zpool', 'zpool', 'used to learn the pool\'s features (block cloning); copies fall back without it', async () => undefined, 'warn');
    await this.binary('flock', 'flock', 'every job\'s lock is taken with it', (p) => firstLine(p, ['--version']));
    const rsync = uses('rsync');
    if (rsync) {
      const command = stringOption(rsync.plugin, 'command', 'rsync');
      if ((await this.binary('rsync', command, `the rsync plugin (${rsync.at}) copies with it`, (p) => firstLine(p, ['--version']))) !== undefined) {
        // The release (or, for an older one, the probed behaviour) the copy relies on against symlink races.
        const safety = await checkRsync(command).catch((error: unknown) => ({ ok: false, detail: `${command} --version: ${commandFailure(error)}` }));
        this.add('rsync symlink races', safety.ok ? 'ok' : 'fail', `${safety.detail}; required: rsync ${REQUIRED_RSYNC.join('.')} or later, or an older one that a probe shows refusing`);
      }
    }
    const nfs = uses('nfs-exports');
    if (nfs && stringOption(nfs.plugin, 'mode', 'drop-in') !== 'sharenfs') {
      await this.binary('exportfs', stringOption(nfs.plugin, 'exportfsCommand', 'exportfs'), `the nfs-exports plugin (${nfs.at}) runs it`, async () => undefined);
    }
    const syslog = uses('syslog');
    if (syslog) await this.binary('logger', stringOption(syslog.plugin, 'command', 'logger'), `the syslog plugin (${syslog.at}) sends through it (log lines would only reach stderr)`, (p) => firstLine(p, ['--version']), 'warn');
  }

  /** The root's dataset exists, is mounted, and at the root's directory. */
  private async mount(root: Root): Promise<boolean> {
    const check = `roots[${root.index}].mount`;
    const where = `config ${this.config!.source}: roots[${root.index}]`;
    let out: string;
    try {
      out = (await run(zfsOf(root), ['get', '-H', '-o', 'property,value', 'mountpoint,mounted', root.rootfs], LIMIT)).stdout;
    } catch (error) {
      this.add(check, 'fail', `${where}.rootfs: ${commandFailure(error)}`);
      return false;
    }
    const props = new Map(out.split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]));
    const mountpoint = props.get('mountpoint') ?? '';
    if (props.get('mounted') !== 'yes') {
      this.add(check, 'fail', `${where}.rootfs: ${root.rootfs} is not mounted (its mountpoint is ${mountpoint}): zfs mount ${shellWord(root.rootfs)}`);
      return true;
    }
    const [a, b] = await Promise.all([stat(root.rootdir).catch(() => undefined), stat(mountpoint).catch(() => undefined)]);
    const real = await realpath(mountpoint).catch(() => mountpoint);
    if (!a || !b || a.dev !== b.dev || a.ino !== b.ino || real !== root.rootdir) {
      this.add(check, 'fail', `${where}.rootdir: ${quoteName(root.rootdir)} is not where ${root.rootfs} is mounted (${quoteName(mountpoint)})`);
      return true;
    }
    this.add(check, 'ok', `${root.rootfs} is mounted at ${quoteName(root.rootdir)}`);
    // Served by one stateDir: another one's claim would make every run refuse the root.
    const claim = await readRootClaim(root.rootdir);
    if (claim !== undefined && claim.stateDir !== (await realpath(this.config!.stateDir).catch(() => this.config!.stateDir))) {
      this.add(`roots[${root.index}].owner`, 'fail', claimedLine(root.rootdir, claim, this.config!.stateDir));
    }
    return true;
  }

  /** The root lets nobody else rename what the tool makes in it (rootModeProblem). */
  private async rootMode(root: Root): Promise<void> {
    const s = await stat(root.rootdir).catch(() => undefined);
    if (s === undefined) return;
    const problem = rootModeProblem(root.rootdir, s, process.getuid?.() ?? 0);
    const mode = (s.mode & 0o7777).toString(8).padStart(4, '0');
    this.add(`roots[${root.index}].mode`, problem === undefined ? 'ok' : 'fail', problem ?? `${quoteName(root.rootdir)} is mode ${mode}, owned by uid ${s.uid}: nobody else can rename what the tool makes in it`);
  }

  /** Every configured property name is one the pool knows, and every value one it accepts. */
  private async properties(root: Root): Promise<void> {
    const zfsPlugin = pluginOf(root, 'zfs');
    const check = `roots[${root.index}].properties`;
    if (!zfsPlugin) return;
    const properties = (optionsOf(zfsPlugin.plugin).properties ?? {}) as Record<string, string>;
    const keyOf = (k: string): string => `config ${this.config!.source}: ${zfsPlugin.key(['properties', k])}`;
    const entries = Object.entries(properties);
    if (entries.length === 0) {
      this.add(check, 'ok', `no ZFS properties configured for ${root.rootfs}'s new datasets`);
      return;
    }
    let known: string[];
    try {
      known = (await run(zfsOf(root), ['get', '-H', '-o', 'property', 'all', root.rootfs], LIMIT)).stdout.split('\n').filter(Boolean);
    } catch (error) {
      this.add(check, 'fail', `cannot list the properties of ${root.rootfs}: ${commandFailure(error)}`);
      return;
    }
    const toTry: [string, string][] = [];
    let failed = false;
    for (const [key, value] of entries) {
      if (SET_BY_THE_TOOL.has(key)) {
        this.add(check, 'warn', `${keyOf(key)}: the zfs plugin sets ${key} itself on every new dataset; this value is ignored`);
      } else if (key.includes(':') || key.includes('@') || known.includes(key)) {
        // user properties (with ':') are always accepted; userquota@… and friends are tried
        if (!key.includes(':')) toTry.push([key, value]);
      } else {
        const hint = didYouMean(key, known);
        this.add(check, 'fail', `${keyOf(key)}: ${root.rootfs}'s pool has no property ${quoteName(key)}${hint ? ` (did you mean ${quoteName(hint)}?)` : ''}`);
        failed = true;
      }
    }
    if (toTry.length > 0 && !this.probe) {
      const untried = this.options.dryRun ? 'their values not tried: a dry run makes no probe dataset' : 'their values are tried by doctor';
      if (!failed) this.add(check, 'ok', `${root.rootfs} knows ${toTry.map(([k]) => k).join(', ')} (${untried})`);
    } else if (toTry.length > 0) {
      const problems = await this.tryValues(zfsOf(root), root.rootfs, toTry);
      for (const [key, problem] of problems) {
        this.add(check, 'fail', `${keyOf(key)}: ${quoteName(properties[key] ?? '')} is refused by ${root.rootfs}'s pool: ${problem}`);
        failed = true;
      }
      if (problems.size === 0 && !failed) {
        this.add(check, 'ok', `${root.rootfs} accepts ${toTry.map(([k, v]) => `${k}=${v}`).join(' ')}${entries.length > toTry.length ? ' (and the user properties)' : ''} (tried on a throwaway child)`);
      }
    } else if (!failed) {
      this.add(check, 'ok', `${root.rootfs}: only user properties configured (always accepted)`);
    }
  }

  /** Creates an unmounted throwaway child with the properties; on refusal, one at a time to name the culprits. */
  private async tryValues(zfs: string, rootfs: string, properties: readonly [string, string][]): Promise<Map<string, string>> {
    const attempt = async (set: readonly [string, string][]): Promise<string | undefined> => {
      const name = `${rootfs}/.zdc-doctor-${randomBytes(4).toString('hex')}`;
      const args = ['create', '-o', 'mountpoint=none', '-o', 'canmount=off'];
      for (const [k, v] of set) args.push('-o', `${k}=${v}`);
      try {
        await run(zfs, [...args, name], LIMIT);
      } catch (error) {
        return commandFailure(error).replace(/^cannot create '[^']*': /, '');
      }
      // zfs-fuse may answer busy right after a create: try again a little later.
      for (let i = 0; i < 20; i++) {
        const r = await run(zfs, ['destroy', name], LIMIT).then(() => true, () => false);
        if (r) break;
        await sleep(100 * (i + 1));
      }
      return undefined;
    };
    const problems = new Map<string, string>();
    if ((await attempt(properties)) === undefined) return problems;
    for (const [key, value] of properties) {
      const problem = await attempt([[key, value]]);
      if (problem !== undefined) problems.set(key, problem);
    }
    if (problems.size === 0) problems.set(properties[0]![0], 'refused together, though each is accepted alone');
    return problems;
  }

  private async syslog(): Promise<void> {
    const seen = new Set<string>();
    for (const root of this.roots) {
      const syslog = pluginOf(root, 'syslog');
      if (!syslog) continue;
      const socket = stringOption(syslog.plugin, 'socket', '/dev/log');
      if (seen.has(socket)) continue;
      seen.add(socket);
      const stats = await lstat(socket).catch(() => undefined);
      if (stats?.isSocket()) this.add('syslog', 'ok', `${socket} is a socket (${syslog.at})`);
      else this.add('syslog', 'warn', `config ${this.config!.source}: ${syslog.key(['socket'])}: ${socket} ${stats ? 'is not a socket' : 'does not exist'}: no syslog daemon listens; log lines reach only stderr`);
    }
  }

  private async exports(): Promise<void> {
    for (const root of this.roots) {
      const nfs = pluginOf(root, 'nfs-exports');
      if (!nfs) continue;
      const check = `roots[${root.index}].exports`;
      const exportsFile = stringOption(nfs.plugin, 'exportsFile', '/etc/exports');
      const dropIn = stringOption(nfs.plugin, 'dropInFile', '/etc/exports.d/zfs-dynamic-creator.exports');
      const dir = dirname(dropIn);
      const files = [exportsFile, ...(await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.exports')).sort().map((n) => join(dir, n))];
      let clientsFrom: string | undefined;
      let problems = 0;
      let read = 0;
      for (const file of files) {
        let text: string;
        try {
          text = await readFile(file, 'latin1');
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') continue;
          this.add(check, 'fail', `${file}: cannot be read: ${(error as NodeJS.ErrnoException).code ?? oneLine(error)}`);
          problems += 1;
          continue;
        }
        read += 1;
        const entries = parseExports(text);
        for (const e of entries) {
          const bad = e.clients.find((c) => !CLIENT_TOKEN.test(c) && !/^[^\s()"'#\\]+$/.test(c));
          if (bad !== undefined) {
            this.add(check, 'warn', `${file}:${e.first + 1}: ${quoteName(bad)} is not host(options) as exportfs reads it`);
            problems += 1;
          }
        }
        if (clientsFrom === undefined && (clientsOf(entries, root.rootdir)?.length ?? 0) > 0) clientsFrom = file;
      }
      const configured = optionsOf(nfs.plugin).clients !== undefined;
      const mode = stringOption(nfs.plugin, 'mode', 'drop-in');
      if (!configured && mode !== 'sharenfs' && clientsFrom === undefined) {
        this.add(check, 'fail', `config ${this.config!.source}: ${nfs.key(['clients'])}: not set, and ${quoteName(root.rootdir)} has no line in ${exportsFile} or ${dir}/*.exports to take NFS clients from: every export would be refused`);
      } else if (problems === 0) {
        this.add(check, 'ok', `${read} exports file(s) parsed; new exports get ${configured ? 'the configured clients' : mode === 'sharenfs' ? 'sharenfs' : `the clients of ${quoteName(root.rootdir)}'s line in ${clientsFrom}`}`);
      }
    }
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
      this.add('metrics', 'fail', `${where}: ${dir}: ${(error as NodeJS.ErrnoException).code ?? oneLine(error)} (node_exporter's textfile directory must exist and be writable)`);
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
        if (line.includes('zfs-dynamic-creator') && this.roots.some((r) => line.startsWith(`${r.rootdir} `) || line.startsWith(`${r.rootdir}\t`))) lines.push(`/etc/incron.d/${name}:${i + 1}`);
      }
    }
    const running = pids.length > 0 ? `incrond runs (pid ${pids.join(', ')})` : 'incrond does not run';
    const table = lines.length > 0 ? `a line for a configured root in ${lines.join(', ')}` : 'no /etc/incron.d line for a configured root';
    this.add('incron', 'info', `${running}; ${table}; incron drops directory events in bursts, so run the daemon (watch) or a periodic reconcile to sweep what it misses`);
  }

  /** Interrupted jobs in the journal and leftovers on the datasets. */
  private async jobs(): Promise<void> {
    const config = this.config!;
    const journal = new Journal(config.stateDir);
    const recover = `zfs-dynamic-creator recover${config.source.startsWith('/') ? ` --config ${shellWord(config.source)}` : ''}`;
    let problems = 0;
    for (const root of this.roots) {
      const records = await journal.list(root.rootdir);
      for (const r of records) {
        if (await isLocked(config.stateDir, r.id)) continue;
        if (r.status === 'cleanup-pending') {
          this.add('jobs', 'info', `${quoteName(`${root.rootdir}/${r.name}`)}: live and published; its cleanup was left to the next run for the root (handle --no-wait)${r.aside ? `, the original kept at ${quoteName(r.aside)} until then` : ''}; or run: ${recover}`);
          continue;
        }
        problems += 1;
        this.add('jobs', 'warn', `${quoteName(`${root.rootdir}/${r.name}`)}: interrupted in phase ${r.phase}${r.committed ? ' (past its commit point)' : ''}${r.aside ? `, the original kept at ${quoteName(r.aside)}` : ''}${r.error ? `: ${r.error}` : ''}; finish it with: ${recover}`);
      }
      const journalled = new Set(records.map((r) => r.name));
      let out = '';
      try {
        out = (await run(zfsOf(root), ['list', '-H', '-r', '-d', '1', '-t', 'filesystem', '-o', `name,${PROP_STATE}`, root.rootfs], LIMIT)).stdout;
      } catch {
        continue; // the mount check said why
      }
      for (const line of out.split('\n')) {
        const [name = '', state = '-'] = line.split('\t');
        if (!name.startsWith(`${root.rootfs}/`) || state === '-' || state === 'live') continue;
        const child = name.slice(root.rootfs.length + 1);
        if (journalled.has(child)) continue;
        problems += 1;
        this.add('jobs', 'warn', `${name}: left by an interrupted conversion (state ${state}, no journal record); finish it with: ${recover}`);
      }
    }
    problems += await this.otherRoots();
    if (problems === 0) this.add('jobs', 'ok', 'no interrupted job, no leftover');
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
      const reason = notes.get(rootdir)?.reason ?? (await lstat(rootdir).then(() => undefined, () => `${quoteName(rootdir)} does not exist`));
      problems += 1;
      if (reason !== undefined) this.add('root gone', 'warn', goneLine(rootdir, reason, byRoot.get(rootdir) ?? 0));
      else this.add('jobs', 'warn', `${quoteName(rootdir)}: not in the configuration; ${byRoot.get(rootdir)} job(s) in the journal, which 'zfs-dynamic-creator recover' finishes`);
    }
    return problems;
  }

  /** Directories refused for good until they or the config change: they need someone's attention. */
  private async refusals(): Promise<void> {
    const all = await listRefusals(join(this.config!.stateDir, 'refusals'));
    const roots = new Set(this.roots.map((r) => r.rootdir));
    const ours = all.filter((r) => roots.has(r.rootdir));
    for (const r of ours) this.add('refusals', 'warn', `${quoteName(`${r.rootdir}/${r.name}`)} needs attention: ${r.reason} (refused at ${humanTime(r.since)}; tried again once the directory or the config changes, or by: zfs-dynamic-creator handle ${shellWord(`${r.rootdir}/${r.name}`)})`);
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
    lines.push(`${report.ok ? 'all checks passed' : 'some checks FAILED'}: ${count('ok')} ok, ${count('warn')} warning(s), ${count('fail')} failed`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return report.ok ? 0 : 1;
}
