/**
 * The original script's command line, unchanged:
 *   zfs-dynamic-creator [options] <rootfs> <rootdir> <filename> <event>   (from incron)
 *   zfs-dynamic-creator [options] <rootfs> <rootdir>                      (maintenance)
 * turned into a config: the config file's root for <rootdir> when there is one,
 * else the default plugins, with the flags applied on top.
 */
import { validateConfig, type Config, type PluginSpec } from './core/index.js';
import { DEFAULT_PLUGINS } from './app.js';

export interface LegacyFlags {
  readonly delay?: number;
  readonly addExport?: boolean;
  readonly addRemoveAllExports?: boolean;
  readonly onlyDirsMatching?: string;
}

/** Sets options of plugin `name` in `specs` (adding the plugin before `before`, or at the end). */
export function withPluginOptions(specs: readonly PluginSpec[], name: string, patch: Record<string, unknown>, before?: string): PluginSpec[] {
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

export function legacyConfig(rootfs: string, rootdir: string, flags: LegacyFlags, file: Config | undefined): Config {
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
    ...(file ? { stateDir: file.stateDir, lockStaleSeconds: file.lockStaleSeconds, watch: file.watch } : {}),
    roots: [{ rootfs, rootdir: dir, plugins }],
  };
  return validateConfig(raw, file ? `${file.source} (with command-line options)` : 'command line', DEFAULT_PLUGINS, file?.baseDir);
}
