/**
 * history: what was converted, when, by which version, how big and how long, read from the
 * datasets themselves (the user properties the zfs plugin sets when it marks a dataset live, see
 * plugins/zfs/zfs.ts PROP_HISTORY), so it survives the journal, the state directory and reinstalls.
 * One `zfs list` per configured root; nothing is changed.
 */
import type { App } from '../app.js';
import { humanTime, run } from '../core/index.js';
import { PROP_HISTORY, PROP_STATE } from '../../plugins/zfs/zfs.js';
import { jsonText } from './envelope.js';

export interface Conversion {
  readonly rootdir: string;
  readonly dataset: string;
  readonly mountpoint: string;
  /** When it was marked live (ISO 8601); null for a dataset converted by a version that kept no history. */
  readonly converted: string | null;
  readonly version: string | null;
  readonly seconds: number | null;
  readonly files: number | null;
  readonly bytes: number | null;
}

export interface HistoryRoot {
  readonly rootfs: string;
  readonly rootdir: string;
  readonly conversions: Conversion[];
  /** Why the root's datasets could not be listed. */
  readonly error?: string;
}

const COLUMNS = ['name', 'mountpoint', PROP_STATE, PROP_HISTORY.converted, PROP_HISTORY.version, PROP_HISTORY.seconds, PROP_HISTORY.files, PROP_HISTORY.bytes];

const text = (value: string | undefined): string | null => (value === undefined || value === '-' || value === '' ? null : value);
const number = (value: string | undefined): number | null => {
  const t = text(value);
  if (t === null) return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
};

export async function collectHistory(app: App): Promise<HistoryRoot[]> {
  const roots: HistoryRoot[] = [];
  for (const root of app.config.roots) {
    let out: string;
    try {
      out = (await run('zfs', ['list', '-H', '-r', '-d', '1', '-t', 'filesystem', '-o', COLUMNS.join(','), root.rootfs])).stdout;
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr;
      roots.push({ rootfs: root.rootfs, rootdir: root.rootdir, conversions: [], error: (stderr ?? (error as Error).message).trim().split('\n')[0] ?? 'zfs list failed' });
      continue;
    }
    const conversions: Conversion[] = [];
    for (const line of out.split('\n')) {
      if (line === '') continue;
      const [dataset = '', mountpoint = '', state, converted, version, seconds, files, bytes] = line.split('\t');
      // Only the root's children that a conversion finished (state=live); in-flight ones are status's.
      if (dataset === root.rootfs || state !== 'live') continue;
      conversions.push({ rootdir: root.rootdir, dataset, mountpoint, converted: text(converted), version: text(version), seconds: number(seconds), files: number(files), bytes: number(bytes) });
    }
    // Oldest first; those without a record (older versions) before them.
    conversions.sort((a, b) => (a.converted ?? '').localeCompare(b.converted ?? '') || a.dataset.localeCompare(b.dataset));
    roots.push({ rootfs: root.rootfs, rootdir: root.rootdir, conversions });
  }
  return roots;
}

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export async function history(app: App, options: { json: boolean }): Promise<number> {
  const roots = await collectHistory(app);
  const failed = roots.some((r) => r.error !== undefined);
  if (options.json) {
    process.stdout.write(jsonText('history', { config: app.config.source, roots }));
    return failed ? 1 : 0;
  }
  const lines: string[] = [];
  for (const root of roots) {
    if (root.error !== undefined) {
      lines.push(`${root.rootdir} (${root.rootfs}): cannot list its datasets: ${root.error}`);
      continue;
    }
    lines.push(`${root.rootdir} (${root.rootfs}): ${root.conversions.length} conversion(s)`);
    for (const c of root.conversions) {
      if (c.converted === null) {
        lines.push(`  ${'-'.padEnd(25)} ${c.dataset} (converted by a version that kept no history)`);
        continue;
      }
      const size = c.files !== null && c.bytes !== null ? `${c.files} file(s), ${human(c.bytes)}` : 'size not recorded';
      const took = c.seconds !== null ? `${c.seconds} s` : 'duration not recorded';
      lines.push(`  ${humanTime(c.converted).padEnd(25)} ${c.dataset}: ${size}, ${took}, by zfs-dynamic-creator ${c.version ?? '?'}`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  return failed ? 1 : 0;
}
