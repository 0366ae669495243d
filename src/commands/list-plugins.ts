/**
 * list-plugins: for each root, every plugin, its source, version and the hooks it taps, in lifecycle
 * order; with --options (and always in --json) its effective options: defaults applied, the root's
 * overrides merged in (see mergePlugins in src/core/config.ts), and where they are written.
 */
import type { App } from '../app.js';
import type { PluginOrigin } from '../core/config.js';
import { jsonText } from './envelope.js';

export interface PluginRow {
  readonly name: string;
  readonly source: string;
  readonly version: string;
  readonly location: string;
  readonly hooks: readonly string[];
  /** Its options as the plugin runs with them (the root's overrides merged, defaults applied). */
  readonly options: unknown;
  /** Where it is written in the config ("plugins[2]", "roots[0].plugins[1]"), when known. */
  readonly configuredAt?: string;
  /** The root's override merged into its options ("roots[0].plugins.zfs"), when there is one. */
  readonly overriddenAt?: string;
}

export interface RootRow {
  readonly rootfs: string;
  readonly rootdir: string;
  readonly plugins: readonly PluginRow[];
}

/**
 * Options as an administrator writes them and can paste back: a regular expression as its source
 * (JSON would show `{}`), everything else as it is (durations are in seconds, sizes as given).
 */
export function asWritten(value: unknown): unknown {
  if (value instanceof RegExp) {
    const flags = value.flags.replace(/[^ims]/g, '');
    return flags ? `(?${flags})${value.source}` : value.source;
  }
  if (Array.isArray(value)) return value.map(asWritten);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, asWritten(v)]));
  return value;
}

/** Each root's plugins with their effective options, in config order. */
export function pluginRows(app: App): RootRow[] {
  return app.engines.map((engine, index) => {
    const origins: readonly PluginOrigin[] | undefined = app.config.roots[index]?.origins;
    return {
      rootfs: engine.context.rootfs,
      rootdir: engine.context.rootdir,
      plugins: engine.plugins.map((p, i) => {
        const origin = origins?.[i];
        return {
          name: p.name,
          source: p.source,
          version: p.version,
          location: p.location,
          hooks: p.taps,
          options: asWritten(p.options ?? {}),
          ...(origin ? { configuredAt: origin.spec } : {}),
          ...(origin?.override ? { overriddenAt: origin.override.at } : {}),
        };
      }),
    };
  });
}

/** The effective options of each plugin of each root, indented, one plugin per line (for --options). */
export function optionLines(root: RootRow, indent: string): string[] {
  return root.plugins.map(
    (p) =>
      `${indent}${p.name}: ${JSON.stringify(p.options)}${p.overriddenAt ? `  (${p.configuredAt ?? '?'} with ${p.overriddenAt} merged in)` : ''}`,
  );
}

export async function listPlugins(app: App, options: { json: boolean; options?: boolean }): Promise<number> {
  const roots = pluginRows(app);
  if (options.json) {
    process.stdout.write(jsonText('list-plugins', { config: app.config.source, roots }));
    return 0;
  }
  const lines = [`config: ${app.config.source}`];
  for (const root of roots) {
    lines.push('', `${root.rootdir}  (${root.rootfs})`);
    const width = Math.max(...root.plugins.map((p) => p.name.length));
    for (const p of root.plugins) {
      lines.push(`  ${p.name.padEnd(width)}  ${p.source.padEnd(7)}  ${p.version.padEnd(8)}  ${p.hooks.join(', ')}`);
      if (p.source !== 'builtin') lines.push(`  ${''.padEnd(width)}  from ${p.location}`);
      if (options.options) {
        lines.push(`  ${''.padEnd(width)}  options ${JSON.stringify(p.options)}`);
        if (p.overriddenAt) lines.push(`  ${''.padEnd(width)}  ${p.configuredAt ?? '?'} with ${p.overriddenAt} merged in`);
      }
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}
