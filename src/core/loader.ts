/**
 * Plugin loading. A spec is "name" or ["name", { options }]. A bare name that
 * is a builtin resolves to plugins/<name>; a name starting with "." or "/" is a
 * path (relative to the config file); anything else is a package.
 * Whatever it resolves to (builtins too) is imported only from a trusted place:
 * the module file and every directory above it owned by root and not writable
 * by group or others (src/core/trust.ts); else the plugin is refused unloaded.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError, oneLine, unknownKey } from './errors.js';
import { CONTRACT, HOOK_ORDER, type HookName } from './contract.js';
import type { Hooks } from './hooks.js';
import { assertTrusted } from './trust.js';
import { embeddedProgram } from './embedded.js';
import { optionsOwner, type PluginOrigin } from './config.js';
import type { Logger, PluginDefinition, PluginSpec, RootInfo } from './types.js';
import { ownVersion } from './version.js';

export type PluginSource = 'builtin' | 'path' | 'package';

export interface LoadedPlugin {
  readonly name: string;
  readonly version: string;
  readonly source: PluginSource;
  /** Where it was loaded from. */
  readonly location: string;
  /** The hooks it taps, in lifecycle order (not doctor and history: CONTRACT[hook].report). */
  readonly taps: HookName[];
  readonly options: unknown;
}

const here = dirname(fileURLToPath(import.meta.url));
/** plugins/ next to src/ (in the source tree and in dist/ alike). */
export const BUILTIN_DIR = resolve(here, '..', '..', 'plugins');

function builtinEntry(name: string): string | undefined {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) return undefined;
  for (const file of ['index.js', 'index.ts']) {
    const candidate = join(BUILTIN_DIR, name, file);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

export function builtinNames(): string[] {
  const embedded = embeddedProgram();
  if (embedded) return [...embedded.plugins.keys()].sort();
  try {
    return readdirSync(BUILTIN_DIR)
      .filter((n) => builtinEntry(n) !== undefined)
      .sort();
  } catch {
    return [];
  }
}

const require_ = createRequire(import.meta.url);

interface Resolved {
  readonly file: string;
  readonly source: PluginSource;
  readonly packageVersion?: string;
  /** A builtin of the self-contained program: its definition, from the executable itself. */
  readonly embedded?: unknown;
}

function resolveSpec(name: string, baseDir: string): Resolved {
  const embedded = embeddedProgram()?.plugins;
  if (embedded?.has(name)) return { file: `${process.execPath}:plugins/${name}`, source: 'builtin', embedded: embedded.get(name) };
  const builtin = builtinEntry(name);
  if (builtin) return { file: builtin, source: 'builtin' };
  if (name.startsWith('.') || isAbsolute(name)) {
    const file = resolve(baseDir, name);
    if (!existsSync(file)) throw new Error(`plugin file ${file} does not exist`);
    return { file, source: 'path' };
  }
  const requireFrom = createRequire(join(baseDir, 'noop.js'));
  let file: string;
  try {
    file = requireFrom.resolve(name);
  } catch {
    try {
      file = require_.resolve(name);
    } catch {
      throw new Error(`plugin "${name}" is neither a builtin (${builtinNames().join(', ')}), a path, nor an installed package`);
    }
  }
  return { file, source: 'package', packageVersion: packageVersionOf(name, file) };
}

function packageVersionOf(name: string, entry: string): string | undefined {
  let dir = dirname(entry);
  for (let i = 0; i < 8; i++) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      const data = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
      if (data.name === name) return data.version;
    }
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return undefined;
}

function isDefinition(value: unknown): value is PluginDefinition<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { apply?: unknown }).apply === 'function' &&
    typeof (value as { name?: unknown }).name === 'string'
  );
}

export interface LoadContext {
  readonly hooks: Hooks;
  readonly root: RootInfo;
  readonly log: Logger;
  readonly dryRun: boolean;
  readonly stateDir: string;
  /** Relative plugin paths resolve from here (the config file's directory). */
  readonly baseDir: string;
  /** For error messages: "config /etc/x.yaml: roots[0].plugins". */
  readonly where: string;
  /**
   * Where each spec is written (RootConfig.origins), with `file` ("config /etc/x.yaml"): error
   * messages then name the shared list's entry, or the root's override that set the option.
   */
  readonly origins?: { readonly file: string; readonly of: readonly PluginOrigin[] };
}

interface Imported {
  readonly resolved: Resolved;
  readonly definition: unknown;
}

/** Resolves a spec, checks its file is in a trusted place, and imports it: a ConfigError saying why not. */
async function importPlugin(name: string, at: string, baseDir: string): Promise<Imported> {
  let resolved: Resolved;
  try {
    resolved = resolveSpec(name, baseDir);
  } catch (error) {
    throw new ConfigError(`${at}: cannot load plugin "${name}": ${oneLine(error)}`);
  }
  if (resolved.embedded !== undefined) return { resolved, definition: resolved.embedded };
  // Refused before it is imported: importing a module runs it.
  const real = await assertTrusted(resolved.file, 'file', `${at}: plugin "${name}"${resolved.file === name ? '' : ` (${resolved.file})`}`);
  try {
    const url = pathToFileURL(real).href;
    const mod = (await (embeddedProgram()?.importModule(url) ?? import(url))) as { default?: unknown };
    return { resolved, definition: mod.default ?? mod };
  } catch (error) {
    throw new ConfigError(`${at}: cannot load plugin "${name}": ${oneLine(error)}`);
  }
}

/** Loads, validates and applies every plugin of a root, recording which hooks each taps. */
export async function loadPlugins(specs: readonly PluginSpec[], ctx: LoadContext): Promise<LoadedPlugin[]> {
  const at = (index: number): string => {
    const origin = ctx.origins?.of[index];
    return origin && ctx.origins ? `${ctx.origins.file}: ${origin.spec}` : `${ctx.where}[${index}]`;
  };
  // Every plugin is imported at once (the loader reads module files through the thread pool: one
  // after another, a run that only rejects a name waited for each in turn); each is still checked
  // before it is imported. They are validated and applied in the config's order, and the first
  // spec that fails, in that order, is the error (the others' outcomes are not left unhandled).
  const imports = specs.map((spec, index) => {
    const attempt = importPlugin(typeof spec === 'string' ? spec : spec[0], at(index), ctx.baseDir);
    attempt.catch(() => undefined);
    return attempt;
  });
  const loaded: LoadedPlugin[] = [];
  for (const [index, spec] of specs.entries()) {
    const name = typeof spec === 'string' ? spec : spec[0];
    const rawOptions = typeof spec === 'string' ? {} : spec[1];
    const origin = ctx.origins?.of[index];
    const { resolved, definition } = await imports[index]!;
    if (!isDefinition(definition)) {
      throw new ConfigError(`${at(index)}: plugin "${name}" does not default-export { name, apply(hooks, context) }`);
    }
    let options: unknown = rawOptions;
    if (definition.options) {
      try {
        options = definition.options.parse(rawOptions);
      } catch (error) {
        // Every mistake at once, an unknown option worded as an unknown config key is.
        const known = Object.keys((definition.options as { shape?: Record<string, unknown> }).shape ?? {});
        const problems = describeOptionsError(error).map(({ path, message, key }) => {
          const owner = origin && ctx.origins ? `${ctx.origins.file}: ${optionsOwner(origin, path)}` : `${at(index)}[1]`;
          const where = `${owner}: ${path.length > 0 ? path.map((p, i) => (typeof p === 'number' ? `[${p}]` : `${i > 0 ? '.' : ''}${p}`)).join('') : '(options)'}`;
          return key !== undefined ? unknownKey(where, key, known) : `${where}: ${message}`;
        });
        throw new ConfigError(problems[0]!, problems);
      }
    }
    // A plugin's taps are the ones it adds while it is applied.
    const before = new Map(HOOK_ORDER.map((h) => [h, ctx.hooks[h].taps.length]));
    try {
      await definition.apply(ctx.hooks, {
        options: options as Record<string, unknown>,
        root: ctx.root,
        log: ctx.log.child({ plugin: definition.name }),
        dryRun: ctx.dryRun,
        stateDir: ctx.stateDir,
      });
    } catch (error) {
      throw new ConfigError(`${at(index)}: plugin "${name}" failed to start: ${oneLine(error)}`);
    }
    // Its part in the lifecycle: doctor and history taps are not listed.
    const taps = HOOK_ORDER.filter((h) => CONTRACT[h].report !== true && ctx.hooks[h].taps.length > (before.get(h) ?? 0));
    loaded.push({
      name: definition.name,
      version: definition.version ?? resolved.packageVersion ?? (resolved.source === 'builtin' ? ownVersion() : 'unknown'),
      source: resolved.source,
      location: resolved.file,
      taps,
      options,
    });
  }
  for (const hookName of HOOK_ORDER) {
    if (CONTRACT[hookName].required && !loaded.some((p) => p.taps.includes(hookName))) {
      throw new ConfigError(`${ctx.where}: no plugin taps the required "${hookName}" phase (${CONTRACT[hookName].description})`);
    }
  }
  return loaded;
}

/**
 * Every issue of a zod error, with its key (an unknown key is named in the path, so that it can
 * be told whether a root's override set it; `key` is then that key).
 */
function describeOptionsError(error: unknown): { path: (string | number)[]; message: string; key?: string }[] {
  const issues = (error as { issues?: { path: (string | number)[]; message: string; code?: string; keys?: unknown }[] }).issues;
  if (!Array.isArray(issues) || issues.length === 0) return [{ path: [], message: oneLine(error) }];
  return issues.flatMap((issue) => {
    const keys =
      issue.code === 'unrecognized_keys' && Array.isArray(issue.keys) ? issue.keys.filter((k): k is string => typeof k === 'string') : [];
    if (keys.length === 0) return [{ path: [...issue.path], message: issue.message }];
    return keys.map((key) => ({ path: [...issue.path, key], message: 'unknown key', key }));
  });
}
