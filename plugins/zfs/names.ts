/**
 * How a directory's name becomes its dataset's name. A name ZFS allows (dataset_namecheck and
 * libzfs's zfs_validate_name in OpenZFS: letters, digits, space and - _ . : in a component; `%`
 * only for its own temporary names, `@` and `#` never; the whole name under 256 bytes with its
 * NUL) is the dataset's name as it is. With the zfs plugin's option mapNames, any other name is
 * mapped (mapName): deterministic, collision-checked against the dataset's recorded name
 * (PROP_NAME), and the dataset is mounted at the directory's own path.
 */
import { createHash } from 'node:crypto';
import { MAX_DATASET_NAME, datasetNameProblem, type DatasetInfo } from './zfs.js';

/** Hex digits of the name's hash in a mapped name (48 bits). */
const HASH_LENGTH = 12;
const SAFE = /[A-Za-z0-9_.: -]/;

/**
 * Why a name cannot be mapped, or undefined. A control character (a tab, a newline) would be in
 * the dataset's mountpoint, which `zfs list -H` prints as it is: one line, tab-separated.
 */
export function unmappable(name: string): string | undefined {
  // eslint-disable-next-line no-control-regex
  const control = /[\x00-\x1f\x7f]/.exec(name);
  return control ? `it holds the control character ${JSON.stringify(control[0])}, which cannot be in a mountpoint zfs lists` : undefined;
}

/**
 * The dataset component for `name` under `rootfs` when mapped: the name itself when ZFS allows
 * it (so a mapped name maps to itself); else each character ZFS forbids made `_`, cut so the
 * whole dataset name fits in 255 bytes, then `_` and the first 12 hex digits of the name's
 * SHA-256 (two names that differ only in what was replaced or cut stay apart). Undefined when
 * the root's own name leaves no room.
 */
export function mapName(rootfs: string, name: string): string | undefined {
  if (datasetNameProblem(rootfs, name) === undefined) return name;
  const room = MAX_DATASET_NAME - Buffer.byteLength(rootfs) - 1 - 1 - HASH_LENGTH;
  if (room < 1) return undefined;
  const safe = [...name].map((c) => (SAFE.test(c) ? c : '_')).join('');
  const hash = createHash('sha256').update(name, 'utf8').digest('hex').slice(0, HASH_LENGTH);
  return `${safe.slice(0, room)}_${hash}`;
}

/**
 * The dataset of directory `name` under `rootfs`: `${rootfs}/${name}` when ZFS allows the name,
 * else the mapped one (`mapped: true`) when mapping is on, else why not. A run below the root
 * (`exp/sample/run`, a root's layout) keeps its levels' names, which ZFS must allow; only the
 * run's own name is mapped.
 */
export function datasetFor(
  rootfs: string,
  name: string,
  mapNames: boolean,
): { dataset: string; mapped: boolean } | { problem: string; mappable: boolean } {
  const cut = name.lastIndexOf('/');
  for (const level of cut < 0 ? [] : name.slice(0, cut).split('/')) {
    const problem = datasetNameProblem(rootfs, level);
    if (problem !== undefined)
      return { problem: `its level ${JSON.stringify(level)} cannot be a dataset name: ${problem}`, mappable: false };
  }
  const parent = cut < 0 ? rootfs : `${rootfs}/${name.slice(0, cut)}`;
  const run = name.slice(cut + 1);
  const problem = datasetNameProblem(parent, run);
  if (problem === undefined) return { dataset: `${parent}/${run}`, mapped: false };
  const why = unmappable(run) ?? `the name of ${parent} leaves no room for a mapped name`;
  const component = unmappable(run) === undefined ? mapName(parent, run) : undefined;
  if (component === undefined) return { problem: mapNames ? `${problem}; it cannot be mapped: ${why}` : problem, mappable: false };
  return mapNames ? { dataset: `${parent}/${component}`, mapped: true } : { problem, mappable: true };
}

/**
 * The name as a property value: `%` and every byte that is not printable ASCII as %XX (UTF-8), so
 * the value is one line without tabs whatever the name; decodeName gives it back.
 */
export function encodeName(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    out +=
      byte >= 0x20 && byte < 0x7f && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** The name a PROP_NAME value stands for; undefined for a value that is not one (unset: "-"). */
export function decodeName(value: string | undefined): string | undefined {
  if (value === undefined || value === '' || value === '-') return undefined;
  try {
    const name = decodeURIComponent(value);
    return encodeName(name) === value ? name : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The directory (relative to the root) a dataset below `rootfs` is named after: its name below
 * rootfs, the last component its recorded name (PROP_NAME) when that was mapped.
 */
export function directoryOf(rootfs: string, ds: DatasetInfo): string {
  const named = decodeName(ds.named);
  const oneComponent = named !== undefined && named !== '.' && named !== '..' && !/[/\0]/.test(named);
  const own = ds.name.slice(rootfs.length + 1);
  return oneComponent ? `${own.slice(0, own.lastIndexOf('/') + 1)}${named}` : own;
}

/** The dataset that holds `dataset`'s name (its parent). */
export function parentOf(dataset: string): string {
  return dataset.slice(0, dataset.lastIndexOf('/'));
}
