/**
 * Configuration: found by cosmiconfig under the module name
 * "zfs-dynamic-creator" (package.json key, .zfs-dynamic-creatorrc[.json|.yaml|.yml|.js|.mjs|.cjs],
 * zfs-dynamic-creator.config.[js|mjs|cjs|ts], .config/…), then /etc/zfs-dynamic-creator/,
 * or given with --config PATH. Validated up front: an error names the file and the key.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { cosmiconfig } from 'cosmiconfig';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import type { PluginSpec } from './types.js';

export const MODULE_NAME = 'zfs-dynamic-creator';
export const DEFAULT_STATE_DIR = '/var/lib/zfs-dynamic-creator';
export const ETC_DIR = '/etc/zfs-dynamic-creator';
export const ETC_FILES = ['config.yaml', 'config.yml', 'config.json', 'config.js', 'config.mjs', 'config.cjs'];

const pluginSpec = z.union([
  z.string().min(1, 'a plugin name, path or package'),
  z.tuple([z.string().min(1, 'a plugin name, path or package'), z.record(z.string(), z.unknown())]),
]);

const absolutePath = z
  .string()
  .refine((p) => p.startsWith('/'), 'must be an absolute path')
  .transform((p) => (p.length > 1 ? p.replace(/\/+$/, '') : p));

const rootSchema = z
  .object({
    rootfs: z.string().min(1).refine((s) => !s.startsWith('-') && !s.startsWith('/') && !s.endsWith('/'), 'must be a filesystem name such as tank/runs'),
    rootdir: absolutePath,
    plugins: z.array(pluginSpec).optional(),
  })
  .strict();

const watchSchema = z
  .object({
    concurrency: z.number().int().min(1).max(64).default(2),
    sweepIntervalSeconds: z.number().min(1).default(300),
  })
  .strict();

export const configSchema = z
  .object({
    stateDir: absolutePath.default(DEFAULT_STATE_DIR),
    /** Accepted for older configs; ignored: locks are kernel locks that end with their process. */
    lockStaleSeconds: z.number().min(2).max(3600).default(10),
    plugins: z.array(pluginSpec).optional(),
    watch: watchSchema.default({ concurrency: 2, sweepIntervalSeconds: 300 }),
    roots: z.array(rootSchema).min(1, 'list at least one root'),
  })
  .strict();

export type RawConfig = z.input<typeof configSchema>;

export interface RootConfig {
  readonly rootfs: string;
  readonly rootdir: string;
  readonly plugins: readonly PluginSpec[];
}

export interface Config {
  /** The file the config came from, or a description ("command line"). */
  readonly source: string;
  /** Relative plugin paths resolve from here. */
  readonly baseDir: string;
  readonly stateDir: string;
  readonly lockStaleSeconds: number;
  readonly watch: { readonly concurrency: number; readonly sweepIntervalSeconds: number };
  readonly roots: readonly RootConfig[];
}

/** Formats a zod path the way the config is written: roots[0].plugins[2][1].regex */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? String(part) : `.${String(part)}`;
  }
  return out === '' ? '(top level)' : out;
}

export function validateConfig(raw: unknown, source: string, defaultPlugins: readonly PluginSpec[], baseDir?: string): Config {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`config ${source}: ${formatPath(issue.path)}: ${issue.message}`);
  }
  const value = parsed.data;
  const seen = new Set<string>();
  value.roots.forEach((root, i) => {
    if (seen.has(root.rootdir)) throw new ConfigError(`config ${source}: roots[${i}].rootdir: ${root.rootdir} is listed twice`);
    seen.add(root.rootdir);
  });
  const shared = value.plugins ?? defaultPlugins;
  return {
    source,
    baseDir: baseDir ?? process.cwd(),
    stateDir: process.env.ZFS_DYNAMIC_CREATOR_STATE_DIR ?? value.stateDir,
    lockStaleSeconds: value.lockStaleSeconds,
    watch: value.watch,
    roots: value.roots.map((r) => ({ rootfs: r.rootfs, rootdir: r.rootdir, plugins: r.plugins ?? shared })),
  };
}

/**
 * Loads the config: the file named, else the first found by the usual search
 * from the working directory, else /etc/zfs-dynamic-creator/config.*.
 * Returns undefined when there is none (and none was named).
 */
export async function loadConfig(path: string | undefined, defaultPlugins: readonly PluginSpec[]): Promise<Config | undefined> {
  const explorer = cosmiconfig(MODULE_NAME);
  let result: { config: unknown; filepath: string; isEmpty?: boolean } | null;
  try {
    if (path !== undefined) {
      const file = resolve(path);
      if (!existsSync(file)) throw new ConfigError(`config ${file}: no such file`);
      result = await explorer.load(file);
    } else {
      result = await explorer.search();
      if (result === null) {
        const etc = ETC_FILES.map((f) => join(ETC_DIR, f)).find((f) => existsSync(f));
        result = etc ? await explorer.load(etc) : null;
      }
    }
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const where = path ?? 'search';
    throw new ConfigError(`config ${where}: ${(error as Error).message.split('\n')[0]}`);
  }
  if (result === null) return undefined;
  if (result.isEmpty || result.config === undefined || result.config === null) {
    throw new ConfigError(`config ${result.filepath}: the file is empty`);
  }
  return validateConfig(result.config, result.filepath, defaultPlugins, dirname(result.filepath));
}
