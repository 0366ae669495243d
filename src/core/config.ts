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
import * as z from 'zod';
import { ConfigError, unknownKey } from './errors.js';
import { assertTrusted } from './trust.js';
import type { Layout, PluginSpec } from './types.js';

// Schemas are parsed a few times per process (the config, each plugin's options, journal records):
// zod's JIT would compile a parser with `new Function` for each object schema on its first parse,
// which costs a short run (the incron path) more than it saves.
z.config({ jitless: true });

export const MODULE_NAME = 'zfs-dynamic-creator';
export const DEFAULT_STATE_DIR = '/var/lib/zfs-dynamic-creator';
export const ETC_DIR = '/etc/zfs-dynamic-creator';
export const ETC_FILES = ['config.yaml', 'config.yml', 'config.json', 'config.js', 'config.mjs', 'config.cjs'];

const pluginSpec = z.union([
  z.string().min(1, 'a plugin name, path or package'),
  z.tuple([z.string().min(1, 'a plugin name, path or package'), z.record(z.string(), z.unknown())]),
]);

function isRegExp(source: string): boolean {
  try {
    new RegExp(source, 'u');
    return true;
  } catch {
    return false;
  }
}

const absolutePath = z
  .string()
  .refine((p) => p.startsWith('/'), 'must be an absolute path')
  .transform((p) => (p.length > 1 ? p.replace(/\/+$/, '') : p));

const rootSchema = z
  .object({
    rootfs: z
      .string()
      .min(1)
      .refine((s) => !s.startsWith('-') && !s.startsWith('/') && !s.endsWith('/'), 'must be a filesystem name such as tank/runs'),
    rootdir: absolutePath,
    /** Where its runs are (src/core/levels.ts): default, its direct children. */
    layout: z
      .object({
        depth: z.number().int().min(1).max(8).default(1),
        levels: z.array(z.string().refine(isRegExp, 'a regular expression')).optional(),
        trustedOwners: z.array(z.number().int().min(0)).default([]),
      })
      .strict()
      .refine((l) => l.levels === undefined || l.levels.length === l.depth, { message: 'levels: one pattern per level (depth of them)' })
      .refine((l) => l.depth > 1 || (l.levels === undefined && l.trustedOwners.length === 0), {
        message:
          "levels and trustedOwners are for runs below the root (depth above 1); the root's direct children are chosen by the name-filter plugin",
      })
      .optional(),
    /** A list of its own (replacing the shared one), or overrides merged into the shared list (see mergePlugins). */
    plugins: z.unknown().transform(rootPlugins).optional(),
  })
  .strict();

const watchSchema = z
  .object({
    /** Jobs doing I/O at once (copy, catch-up, verification, removal, zfs commands). */
    concurrency: z.number().int().min(1).max(64).default(2),
    /** Jobs in flight at once, waiting ones included (a quiet or grace period holds no work slot). */
    maxJobs: z.number().int().min(1).max(4096).default(64),
    sweepIntervalSeconds: z.number().min(1).default(300),
    /** Work slots one owner (the uid of the directory) holds at most (default: concurrency; the slots go to owners in turn). */
    concurrencyPerOwner: z.number().int().min(1).max(64).optional(),
    /** Jobs of one owner in flight at most (default: maxJobs less a quarter kept for the others, at least 1). */
    maxJobsPerOwner: z.number().int().min(1).max(4096).optional(),
    /** Share of the inotify watches free at start (of max_user_watches) this process may use; past it, walks. */
    inotifyShare: z.number().gt(0).max(1).default(0.5),
  })
  .strict();

/** The watch section with the per-owner defaults worked out (each at most its total). */
function watchLimits(w: z.output<typeof watchSchema>): Config['watch'] {
  const { concurrencyPerOwner, maxJobsPerOwner, ...rest } = w;
  return {
    ...rest,
    concurrencyPerOwner: Math.min(w.concurrency, concurrencyPerOwner ?? w.concurrency),
    maxJobsPerOwner: Math.min(w.maxJobs, maxJobsPerOwner ?? Math.max(1, w.maxJobs - Math.floor(w.maxJobs / 4))),
  };
}

const metricsSchema = z
  .object({
    /** A file for node_exporter's textfile collector (…/textfile_collector/zfs_dynamic_creator.prom). */
    textfile: absolutePath.refine((p) => p.endsWith('.prom'), 'must end in .prom (the textfile collector reads only *.prom)'),
  })
  .strict();

/**
 * Keys removed from the config: still accepted (a config that worked keeps working: a service is
 * not stopped at an upgrade over a key that changes nothing), ignored, and named in
 * Config.notices (for check-config and doctor to show) with what became of them.
 */
export const REMOVED_KEYS = {
  lockStaleSeconds:
    'no longer used, ignored: a lock is a kernel flock(2) lock, which ends with its process and is never taken over after a timeout; remove the key',
} as const;

export const configSchema = z
  .object({
    stateDir: absolutePath.default(DEFAULT_STATE_DIR),
    /** Removed (REMOVED_KEYS): accepted for older configs and ignored. */
    lockStaleSeconds: z.number().min(2).max(3600).default(10),
    plugins: z.array(pluginSpec).optional(),
    watch: watchSchema.default({ concurrency: 2, maxJobs: 64, sweepIntervalSeconds: 300, inotifyShare: 0.5 }),
    roots: z.array(rootSchema).min(1, 'list at least one root'),
    metrics: metricsSchema.optional(),
  })
  .strict();

export type RawConfig = z.input<typeof configSchema>;

export interface RootConfig {
  readonly rootfs: string;
  readonly rootdir: string;
  readonly layout?: Layout;
  /** The root's effective plugin list: its own, or the shared one with its overrides merged in. */
  readonly plugins: readonly PluginSpec[];
  /** Where each of `plugins` is written in the config (same order); see optionsLocation. */
  readonly origins?: readonly PluginOrigin[];
}

export interface Config {
  /** The file the config came from, or a description ("command line"). */
  readonly source: string;
  /** Relative plugin paths resolve from here. */
  readonly baseDir: string;
  readonly stateDir: string;
  /** @deprecated read from older configs and ignored (REMOVED_KEYS); nothing uses it. */
  readonly lockStaleSeconds: number;
  /** One line for each removed key the config still sets (REMOVED_KEYS): what became of it. */
  readonly notices: readonly string[];
  readonly watch: {
    readonly concurrency: number;
    readonly maxJobs: number;
    readonly sweepIntervalSeconds: number;
    /** Per owner (the uid of the directory): work slots, and jobs in flight (fair turns between owners). */
    readonly concurrencyPerOwner: number;
    readonly maxJobsPerOwner: number;
    /** The share of the system's free inotify watches this process may use (src/util/watches.ts). */
    readonly inotifyShare: number;
  };
  readonly roots: readonly RootConfig[];
  /** Prometheus textfile (src/metrics/textfile.ts), when configured. */
  readonly metrics?: { readonly textfile: string };
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

/** The keys the config allows where `path` points (numbers, list indices, ignored). */
function knownKeys(path: readonly PropertyKey[]): string[] {
  const at = path.filter((p) => typeof p !== 'number').join('.');
  const schema =
    at === '' ? configSchema : at === 'watch' ? watchSchema : at === 'metrics' ? metricsSchema : at === 'roots' ? rootSchema : undefined;
  return schema ? Object.keys(schema.shape) : [];
}

export function validateConfig(raw: unknown, source: string, defaultPlugins: readonly PluginSpec[], baseDir?: string): Config {
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.flatMap((issue) => {
      const keys = issue.code === 'unrecognized_keys' ? issue.keys : [];
      if (keys.length === 0) return [`config ${source}: ${formatPath(issue.path)}: ${issue.message}`];
      return keys.map((key) => unknownKey(`config ${source}: ${formatPath([...issue.path, key])}`, key, knownKeys(issue.path)));
    });
    throw new ConfigError(problems[0]!, problems);
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
    notices: removedKeys(raw).map(([key, why]) => `config ${source}: ${key}: ${why}`),
    watch: watchLimits(value.watch),
    roots: value.roots.map((r, i) => {
      const merged = mergePlugins(shared, r.plugins, { root: i, sharedAt: value.plugins ? 'plugins' : undefined });
      if (typeof merged === 'string') throw new ConfigError(`config ${source}: ${merged}`);
      return { rootfs: r.rootfs, rootdir: r.rootdir, ...(r.layout && r.layout.depth > 1 ? { layout: r.layout } : {}), ...merged };
    }),
    ...(value.metrics ? { metrics: value.metrics } : {}),
  };
}

/** The removed keys (REMOVED_KEYS) a raw config sets, with what became of each. */
function removedKeys(raw: unknown): [string, string][] {
  return Object.entries(REMOVED_KEYS).filter(([key]) => isPlainObject(raw) && raw[key] !== undefined);
}

// ---- per-root templates: the shared plugin list with a root's overrides merged in --------------------

/** A root's `plugins` as a map: plugin name → options to merge into the shared list's, or false to leave it out. */
export type PluginOverrides = Readonly<Record<string, Readonly<Record<string, unknown>> | false>>;

/** Where a plugin of a root's effective list is written, for error messages. */
export interface PluginOrigin {
  /** Its entry in a list: "plugins[2]" (the shared list), "roots[0].plugins[2]" (the root's own, or the default list). */
  readonly spec: string;
  /** The root's override merged over it, when there is one: where it is written and what it sets. */
  readonly override?: { readonly at: string; readonly options: Readonly<Record<string, unknown>> };
}

/** A plain object (YAML and JSON mappings; not an array, null, a Date or a class instance). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/**
 * The merge rule of overrides: `over` merged into `base`, key by key. Where both values are plain
 * objects, they are merged the same way (recursively); anything else in `over` (a string, number,
 * boolean, null, an array) replaces the base's value as a whole. Keys only in `base` are kept.
 * Neither argument is changed.
 */
export function deepMerge(base: Readonly<Record<string, unknown>>, over: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] = isPlainObject(current) && isPlainObject(value) ? deepMerge(current, value) : value;
  }
  return out;
}

const specName = (spec: PluginSpec): string => (typeof spec === 'string' ? spec : spec[0]);

/** The zod transform of a root's `plugins`: a list (checked as the shared one is) or a map of overrides. */
function rootPlugins(value: unknown, ctx: z.RefinementCtx): PluginSpec[] | PluginOverrides {
  if (Array.isArray(value)) {
    const list = z.array(pluginSpec).safeParse(value);
    if (list.success) return list.data;
    for (const issue of list.error.issues) ctx.addIssue({ code: 'custom', message: issue.message, path: issue.path });
    return z.NEVER;
  }
  if (!isPlainObject(value)) {
    ctx.addIssue({
      code: 'custom',
      message:
        'must be a list of plugins (replacing the shared list) or a map of plugin name to the options to merge into its own (or false to leave it out)',
    });
    return z.NEVER;
  }
  const out: Record<string, Readonly<Record<string, unknown>> | false> = {};
  for (const [name, options] of Object.entries(value)) {
    if (options === false || isPlainObject(options)) out[name] = options;
    else
      ctx.addIssue({
        code: 'custom',
        path: [name],
        message: "must be the options to merge into the plugin's own (a mapping), or false to leave the plugin out for this root",
      });
  }
  return out;
}

/**
 * A root's effective plugins: `own` when it is a list; else `shared` (the top-level list, or the
 * default one) with each override of `own` merged into the options of the plugin of that name
 * (deepMerge), or that plugin left out when the override is false. Order is the shared list's.
 * An override for a plugin the shared list does not have (or has twice) is an error: the message
 * (without the file) is returned.
 */
export function mergePlugins(
  shared: readonly PluginSpec[],
  own: readonly PluginSpec[] | PluginOverrides | undefined,
  at: { readonly root: number; readonly sharedAt?: string | undefined },
): { plugins: PluginSpec[]; origins: PluginOrigin[] } | string {
  const rootAt = `roots[${at.root}].plugins`;
  if (Array.isArray(own)) return { plugins: [...own], origins: own.map((_s, i) => ({ spec: `${rootAt}[${i}]` })) };
  const listAt = at.sharedAt ?? rootAt;
  const overrides = (own ?? {}) as PluginOverrides;
  const names = shared.map(specName);
  for (const name of Object.keys(overrides)) {
    const count = names.filter((n) => n === name).length;
    const list =
      at.sharedAt !== undefined
        ? `the plugin list (${at.sharedAt}: ${names.join(', ')})`
        : `the default plugin list (${names.join(', ')}; a top-level "plugins" list replaces it)`;
    if (count === 0) {
      const near = closest(name, names);
      return `${rootAt}.${name}: no plugin ${JSON.stringify(name)} in ${list}${near !== undefined ? ` (did you mean ${JSON.stringify(near)}?)` : ''}; an override changes the options of a plugin in that list (to add one, give this root a list of its own)`;
    }
    if (count > 1)
      return `${rootAt}.${name}: plugin ${JSON.stringify(name)} is in ${list} ${count} times; an override cannot tell which (give this root a list of its own)`;
  }
  const plugins: PluginSpec[] = [];
  const origins: PluginOrigin[] = [];
  shared.forEach((spec, i) => {
    const name = specName(spec);
    const override = Object.hasOwn(overrides, name) ? overrides[name] : undefined;
    if (override === false) return;
    const origin: PluginOrigin = { spec: `${listAt}[${i}]` };
    if (override === undefined) {
      plugins.push(spec);
      origins.push(origin);
      return;
    }
    plugins.push([name, deepMerge(typeof spec === 'string' ? {} : spec[1], override)]);
    origins.push({ ...origin, override: { at: `${rootAt}.${name}`, options: override } });
  });
  return { plugins, origins };
}

/**
 * Where the option at `path` (e.g. ["properties", "quota"]) of a plugin is written: the root's
 * override ("roots[0].plugins.zfs") when it sets that key or replaces a value above it, else the
 * list entry's options ("plugins[2][1]").
 */
export function optionsOwner(origin: PluginOrigin, path: readonly PropertyKey[]): string {
  if (origin.override && path.length > 0) {
    let node: unknown = origin.override.options;
    for (const part of path) {
      if (!isPlainObject(node)) return origin.override.at;
      if (typeof part !== 'string' || !Object.hasOwn(node, part)) return `${origin.spec}[1]`;
      node = node[part];
    }
    return origin.override.at;
  }
  return `${origin.spec}[1]`;
}

/** The full key of the option at `path`: "roots[0].plugins.zfs.properties.quota", "plugins[2][1].properties.quota". */
export function optionsLocation(origin: PluginOrigin, path: readonly PropertyKey[]): string {
  return path.reduce<string>((s, p) => (typeof p === 'number' ? `${s}[${p}]` : `${s}.${String(p)}`), optionsOwner(origin, path));
}

/** The candidate nearest to `word` (edit distance at most a third of its length, at least 1), if any. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  // Edit distance with a swap of two neighbours counting as one edit (zsf → zfs).
  const distance = (a: string, b: string): number => {
    const d: number[][] = Array.from({ length: a.length + 1 }, (_v, i) =>
      Array.from({ length: b.length + 1 }, (_w, j) => (i === 0 ? j : j === 0 ? i : 0)),
    );
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
        if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1);
        d[i]![j] = best;
      }
    }
    return d[a.length]![b.length]!;
  };
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(word.length / 3)) + 1;
  for (const c of candidates) {
    const d = distance(word.toLowerCase(), c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  return best;
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
  const lines = String(e?.message ?? error)
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
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
  if (!loader)
    throw new ConfigError(`config ${file}: unknown file type ${JSON.stringify(extension)}; use .yaml, .yml, .json, .js, .mjs or .cjs`);
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
