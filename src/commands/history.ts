/**
 * history: what was converted, when, by which version, how big and how long, from the plugins
 * through the `history` hook (src/core/reports.ts): the filesystem plugin lists the root's finished
 * conversions from the filesystems themselves (the zfs plugin: plugins/zfs/history.ts), so the
 * list survives the journal, the state directory and reinstalls; other plugins add their fields.
 * Nothing is changed.
 */
import type { App } from '../app.js';
import { humanTime, type RootEngine } from '../core/index.js';
import type { HistoryEntry } from '../core/reports.js';
import { jsonText } from './envelope.js';

/** One conversion in `history --json`: the plugins' fields beside these (the zfs plugin's: version, seconds, files, bytes). */
export interface Conversion {
  readonly rootdir: string;
  readonly dataset: string;
  readonly mountpoint: string;
  /** When it was marked live (ISO 8601); null for a dataset converted by a version that kept no history. */
  readonly converted: string | null;
  readonly [field: string]: string | number | null;
}

export interface HistoryRoot {
  readonly rootfs: string;
  readonly rootdir: string;
  readonly conversions: Conversion[];
  /** Why the root's conversions could not be listed. */
  readonly error?: string;
}

interface Listed {
  readonly root: HistoryRoot;
  /** The entries as the plugins gave them, in the order of root.conversions. */
  readonly entries: readonly HistoryEntry[];
}

async function listRoot(engine: RootEngine, rootfs: string, rootdir: string): Promise<Listed> {
  let entries: HistoryEntry[];
  try {
    entries = await engine.hooks.history.promise([], engine.context);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr;
    return {
      root: { rootfs, rootdir, conversions: [], error: (stderr ?? (error as Error).message).trim().split('\n')[0] ?? '' },
      entries: [],
    };
  }
  // Oldest first; those without a record (older versions) before them.
  const sorted = [...entries].sort(
    (a, b) => (a.converted ?? '').localeCompare(b.converted ?? '') || a.filesystem.localeCompare(b.filesystem),
  );
  const conversions = sorted.map((e): Conversion => ({
    rootdir,
    dataset: e.filesystem,
    mountpoint: e.mountpoint,
    converted: e.converted,
    ...Object.fromEntries(e.fields.map((f) => [f.key, f.value])),
  }));
  return { root: { rootfs, rootdir, conversions }, entries: sorted };
}

async function collect(app: App): Promise<Listed[]> {
  const listed: Listed[] = [];
  for (const [index, root] of app.config.roots.entries()) listed.push(await listRoot(app.engines[index]!, root.rootfs, root.rootdir));
  return listed;
}

function lineOf(e: HistoryEntry): string {
  if (e.converted === null) return `  ${'-'.padEnd(25)} ${e.filesystem} (converted by a version that kept no history)`;
  const texts = e.fields.flatMap((f) => (f.text !== undefined ? [f.text] : []));
  return `  ${humanTime(e.converted).padEnd(25)} ${e.filesystem}${texts.length > 0 ? `: ${texts.join(', ')}` : ''}`;
}

export async function history(app: App, options: { json: boolean }): Promise<number> {
  const listed = await collect(app);
  const failed = listed.some((l) => l.root.error !== undefined);
  if (options.json) {
    process.stdout.write(jsonText('history', { config: app.config.source, roots: listed.map((l) => l.root) }));
    return failed ? 1 : 0;
  }
  const lines: string[] = [];
  for (const { root, entries } of listed) {
    if (root.error !== undefined) {
      lines.push(`${root.rootdir} (${root.rootfs}): cannot list its datasets: ${root.error}`);
      continue;
    }
    lines.push(`${root.rootdir} (${root.rootfs}): ${root.conversions.length} conversion(s)`, ...entries.map(lineOf));
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return failed ? 1 : 0;
}
