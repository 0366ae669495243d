/**
 * What history lists of a root: its children a conversion finished (state=live), with the
 * conversion's properties (PROP_HISTORY, set when the dataset is marked live), read from the
 * datasets themselves in one `zfs list`, so they survive the journal, the stateDir and reinstalls.
 */
import { quoteName, run, type HistoryEntry, type HistoryField, type RootContext } from '../../src/index.js';
import { decodeName } from './names.js';
import { PROP_COMPLETION, PROP_HISTORY, PROP_NAME, PROP_STATE } from './zfs.js';

const COLUMNS = [
  'name',
  'mountpoint',
  PROP_STATE,
  PROP_HISTORY.converted,
  PROP_HISTORY.version,
  PROP_HISTORY.seconds,
  PROP_HISTORY.files,
  PROP_HISTORY.bytes,
  PROP_COMPLETION.completed,
  PROP_COMPLETION.completedSnapshot,
  PROP_COMPLETION.readonlySince,
  PROP_NAME,
];

const text = (value: string | undefined): string | null => (value === undefined || value === '-' || value === '' ? null : value);
const number = (value: string | undefined): number | null => {
  const t = text(value);
  if (t === null) return null;
  const n = Number(t);
  return Number.isFinite(n) ? n : null;
};

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

/** The fields of one conversion, in the order its line shows them: size, duration, version. */
function fieldsOf(version: string | null, seconds: number | null, files: number | null, bytes: number | null): HistoryField[] {
  return [
    { key: 'files', value: files, text: files !== null && bytes !== null ? `${files} file(s), ${human(bytes)}` : 'size not recorded' },
    { key: 'bytes', value: bytes },
    { key: 'seconds', value: seconds, text: seconds !== null ? `${seconds} s` : 'duration not recorded' },
    { key: 'version', value: version, text: `by zfs-dynamic-creator ${version ?? '?'}` },
  ];
}

/** What followed the conversion (completion.ts), each field only when recorded: completed, snapshot, readonly-since. */
function afterFields(completed: string | null, snapshot: string | null, readonlySince: string | null): HistoryField[] {
  return [
    ...(completed !== null ? [{ key: 'completed', value: completed, text: `run completed ${completed}` }] : []),
    ...(snapshot !== null ? [{ key: 'snapshot', value: snapshot, text: `snapshot @${snapshot}` }] : []),
    ...(readonlySince !== null ? [{ key: 'readonly-since', value: readonlySince, text: `readonly since ${readonlySince}` }] : []),
  ];
}

/** The directory's own name, for a dataset whose name was mapped from it (names.ts); none for the others. */
function nameField(name: string | undefined): HistoryField[] {
  return name === undefined ? [] : [{ key: 'originalName', value: name, text: `named ${quoteName(name)}` }];
}

/** The history tap: the root's finished conversions appended; throws when zfs cannot list them. */
export async function zfsHistory(entries: HistoryEntry[], root: RootContext, zfs: string): Promise<HistoryEntry[]> {
  const out = (
    await run(zfs, ['list', '-H', '-r', '-d', String(root.layout?.depth ?? 1), '-t', 'filesystem', '-o', COLUMNS.join(','), root.rootfs])
  ).stdout;
  const found: HistoryEntry[] = [];
  for (const line of out.split('\n')) {
    if (line === '') continue;
    const [dataset = '', mountpoint = '', state, converted, version, seconds, files, bytes, completed, snapshot, readonlySince, named] =
      line.split('\t');
    // Only the root's children that a conversion finished (state=live); in-flight ones are status's.
    if (dataset === root.rootfs || state !== 'live') continue;
    found.push({
      filesystem: dataset,
      mountpoint,
      converted: text(converted),
      fields: [
        ...fieldsOf(text(version), number(seconds), number(files), number(bytes)),
        ...afterFields(text(completed), text(snapshot), text(readonlySince)),
        ...nameField(decodeName(named)),
      ],
    });
  }
  return [...entries, ...found];
}
