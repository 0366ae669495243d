/**
 * Configuration: the file given with --config PATH, else the first of
 * /etc/zfs-dynamic-creator/config.{yaml,yml,json,js,mjs,cjs}. Nothing is ever
 * searched for in the working directory or above it: the tool runs as root,
 * often standing in a directory other users write to.
 *
 * The file is read with cosmiconfig's loaders (YAML, JSON, JS), but not through
 * cosmiconfig's explorer: constructing one searches the working directory for a
 * "meta config" (package.json, .config/config.{json,yaml,js,cjs,…}) and loads it,
 * which would run a planted .config/config.cjs even with --config given.
 * Before it is read, the file must be a trusted place (src/core/trust.ts).
 * Validated up front: an error names the file and the key.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { defaultLoaders } from 'cosmiconfig';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { assertTrusted } from './trust.js';
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
    /** Jobs doing I/O at once (copy, catch-up, verification, removal, zfs commands). */
    concurrency: z.number().int().min(1).max(64).default(2),
    /** Jobs in flight at once, waiting ones included (a quiet or grace period holds no work slot). */
    maxJobs: z.number().int().min(1).max(4096).default(64),
    sweepIntervalSeconds: z.number().min(1).default(300),
  })
  .strict();

export const configSchema = z
  .object({
    stateDir: absolutePath.default(DEFAULT_STATE_DIR),
    /** Accepted for older configs; ignored: locks are kernel locks that end with their process. */
    lockStaleSeconds: z.number().min(2).max(3600).default(10),
    plugins: z.array(pluginSpec).optional(),
    watch: watchSchema.default({ concurrency: 2, maxJobs: 64, sweepIntervalSeconds: 300 }),
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
  readonly watch: { readonly concurrency: number; readonly maxJobs: number; readonly sweepIntervalSeconds: number };
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

/** The extensions a config file may have, each with the cosmiconfig loader that reads it. */
const LOADERS: Readonly<Record<string, (filepath: string, content: string) => unknown>> = {
  '.yaml': defaultLoaders['.yaml'],
  '.yml': defaultLoaders['.yml'],
  '.json': defaultLoaders['.json'],
  '.js': defaultLoaders['.js'],
  '.mjs': defaultLoaders['.mjs'],
  '.cjs': defaultLoaders['.cjs'],
  '': defaultLoaders.noExt,
};

/**
 * A loader's error in one line that keeps where the syntax is wrong: js-yaml (cosmiconfig's YAML
 * loader) gives `reason` and a 0-based `mark`; the JSON loader's message says "at position N"
 * (turned into a line and column of `content`).
 */
export function syntaxError(error: unknown, content: string): string {
  const e = error as { name?: string; reason?: unknown; mark?: { line?: unknown; column?: unknown }; message?: string };
  if (e?.name === 'YAMLException' && typeof e.mark?.line === 'number' && typeof e.mark.column === 'number') {
    return `YAML syntax error at line ${e.mark.line + 1}, column ${e.mark.column + 1}: ${typeof e.reason === 'string' ? e.reason : 'invalid YAML'}`;
  }
  const lines = String(e?.message ?? error).split('\n').map((l) => l.trim()).filter(Boolean);
  const json = lines.map((l) => /^(.*?)(?: in JSON)? at position (\d+)/.exec(l)).find((m) => m !== null);
  if (json) {
    const before = content.slice(0, Number(json[2]));
    const line = before.split('\n').length;
    const column = before.length - before.lastIndexOf('\n');
    return `JSON syntax error at line ${line}, column ${column}: ${json[1]}`;
  }
  return lines.find((l) => !l.endsWith(':') && !/^(>|\||\d+ \|)/.test(l)) ?? lines[0] ?? 'cannot be parsed';
}

/** The first /etc/zfs-dynamic-creator/config.* that exists, if any. */
export function etcConfigFile(): string | undefined {
  return ETC_FILES.map((f) => join(ETC_DIR, f)).find((f) => existsSync(f));
}

/**
 * Reads one config file that has passed the trust check: `real` is its real
 * path (what is read), `file` the name to report. A file named package.json
 * gives its "zfs-dynamic-creator" key.
 */
async function readConfigFile(file: string, real: string): Promise<unknown> {
  const extension = extname(real);
  const loader = LOADERS[extension];
  if (!loader) throw new ConfigError(`config ${file}: unknown file type ${JSON.stringify(extension)}; use .yaml, .yml, .json, .js, .mjs or .cjs`);
  let content: string;
  try {
    content = await readFile(real, 'utf8');
  } catch (error) {
    throw new ConfigError(`config ${file}: cannot read it: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (content.trim() === '') throw new ConfigError(`config ${file}: the file is empty`);
  let value: unknown;
  try {
    value = await loader(real, content);
  } catch (error) {
    throw new ConfigError(`config ${file}: ${syntaxError(error, content)}`);
  }
  if (basename(real, extension) === 'package' && typeof value === 'object' && value !== null) {
    value = (value as Record<string, unknown>)[MODULE_NAME];
  }
  if (value === undefined || value === null) throw new ConfigError(`config ${file}: the file is empty`);
  return value;
}

/**
 * Loads the config: the file named, else /etc/zfs-dynamic-creator/config.*.
 * The file (and every directory above it) must be owned by root and not writable
 * by group or others (src/core/trust.ts), or it is refused unread.
 * Returns undefined when there is none (and none was named).
 */
export async function loadConfig(path: string | undefined, defaultPlugins: readonly PluginSpec[]): Promise<Config | undefined> {
  let file: string;
  if (path !== undefined) {
    file = resolve(path);
    if (!existsSync(file)) throw new ConfigError(`config ${file}: no such file`);
  } else {
    const etc = etcConfigFile();
    if (etc === undefined) return undefined;
    file = etc;
  }
  const real = await assertTrusted(file, 'file', `config ${file}`);
  const raw = await readConfigFile(file, real);
  return validateConfig(raw, file, defaultPlugins, dirname(file));
}
