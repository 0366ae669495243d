/**
 * How a directory's name becomes a dataset name (plugins/zfs/names.ts): a name ZFS allows as it
 * is; with mapNames, any other name mapped deterministically into ZFS's characters and 255 bytes
 * (the whole dataset name), with a hash so that two names never meet; the original name kept in
 * a property that survives any name.
 */
import { describe, expect, it } from 'vitest';
import { datasetFor, decodeName, directoryOf, encodeName, mapName, unmappable } from '../../plugins/zfs/names.js';
import { MAX_DATASET_NAME, datasetNameProblem, type DatasetInfo } from '../../plugins/zfs/zfs.js';

const ROOTFS = 'tank/runs';
const ZFS_COMPONENT = /^[A-Za-z0-9_.: -]+$/;

function dataset(name: string, named?: string): DatasetInfo {
  return { name, mountpoint: '-', mounted: false, state: 'live', aside: undefined, origin: undefined, named };
}

describe('mapName', () => {
  it('leaves a name ZFS allows as it is', () => {
    for (const name of ['run1', '241207_A01234_0042_BHXXXXXX', 'a b', 'x.y:z-w_v']) expect(mapName(ROOTFS, name)).toBe(name);
  });

  it('maps @, #, % and other characters to _ with a hash of the name, within ZFS characters', () => {
    const mapped = mapName(ROOTFS, 'run#1 @lab')!;
    expect(mapped).toMatch(/^run_1 _lab_[0-9a-f]{12}$/);
    expect(datasetNameProblem(ROOTFS, mapped)).toBeUndefined();
    expect(mapName(ROOTFS, '50%')).toMatch(/^50__[0-9a-f]{12}$/);
  });

  it('is deterministic and idempotent: a mapped name maps to itself', () => {
    for (const name of ['run#1 @lab', 'Lauf über Nacht', '実験', 'x'.repeat(300)]) {
      const once = mapName(ROOTFS, name)!;
      expect(mapName(ROOTFS, name)).toBe(once);
      expect(mapName(ROOTFS, once)).toBe(once);
      expect(once).toMatch(ZFS_COMPONENT);
    }
  });

  it('keeps apart names that differ only in what was replaced', () => {
    const names = ['a#b', 'a@b', 'a%b', 'a_b#', 'a_b@', 'aéb', 'a€b', 'a b#', 'a\u{1F600}b'];
    const mapped = names.map((n) => mapName(ROOTFS, n));
    expect(new Set(mapped).size).toBe(names.length);
    // a_b is a name ZFS allows: it is its own dataset, apart from every mapped one.
    expect(mapped).not.toContain('a_b');
  });

  it('maps UTF-8 names character by character, one _ each', () => {
    expect(mapName(ROOTFS, 'Lauf über Nacht')).toMatch(/^Lauf _ber Nacht_[0-9a-f]{12}$/);
    expect(mapName(ROOTFS, '実験')).toMatch(/^___[0-9a-f]{12}$/);
  });

  it('cuts a long name so that the WHOLE dataset name fits in 255 bytes, and keeps long names apart', () => {
    for (const rootfs of ['p', ROOTFS, `pool/${'d'.repeat(200)}`]) {
      const long = mapName(rootfs, 'x'.repeat(255))!;
      expect(Buffer.byteLength(`${rootfs}/${long}`)).toBe(MAX_DATASET_NAME);
      expect(datasetNameProblem(rootfs, long)).toBeUndefined();
      const other = mapName(rootfs, `${'x'.repeat(254)}y`)!;
      expect(other).not.toBe(long);
      expect(Buffer.byteLength(`${rootfs}/${mapName(rootfs, `${'é'.repeat(120)}#`)!}`)).toBeLessThanOrEqual(MAX_DATASET_NAME);
    }
    // A name that fits exactly is its own.
    const fits = 'y'.repeat(MAX_DATASET_NAME - ROOTFS.length - 1);
    expect(mapName(ROOTFS, fits)).toBe(fits);
    expect(mapName(ROOTFS, `${fits}y`)).not.toBe(`${fits}y`);
  });

  it('has no room under a root whose own name takes nearly all 255 bytes', () => {
    expect(mapName(`p/${'d'.repeat(240)}`, 'run#1')).toBeUndefined();
  });
});

describe('datasetFor', () => {
  it('refuses without mapNames, saying whether mapping would help', () => {
    expect(datasetFor(ROOTFS, 'run1', false)).toEqual({ dataset: `${ROOTFS}/run1`, mapped: false });
    const refused = datasetFor(ROOTFS, 'run#1', false);
    expect(refused).toMatchObject({ mappable: true });
    expect('problem' in refused && refused.problem).toMatch(/"#"/);
  });

  it('maps with mapNames', () => {
    expect(datasetFor(ROOTFS, 'run#1', true)).toEqual({ dataset: `${ROOTFS}/${mapName(ROOTFS, 'run#1')!}`, mapped: true });
  });

  it('never maps a name with a control character (its mountpoint would break zfs list -H)', () => {
    for (const name of ['a\tb', 'a\nb', 'a\x7fb']) {
      expect(unmappable(name)).toMatch(/control character/);
      expect(datasetFor(ROOTFS, name, true)).toMatchObject({
        mappable: false,
        problem: expect.stringMatching(/it cannot be mapped: .*control/),
      });
      expect(datasetFor(ROOTFS, name, false)).toMatchObject({ mappable: false, problem: expect.stringMatching(/^it holds /) });
    }
  });

  it('a slash is never part of a name: mapped or not, a dataset name has one more component only', () => {
    // The engine refuses a name with a slash before any plugin sees it; the mapping alone
    // would still never make a nested dataset of it.
    const mapped = mapName(ROOTFS, 'a/b')!;
    expect(mapped).not.toContain('/');
    expect(mapped).toMatch(/^a_b_[0-9a-f]{12}$/);
  });
});

describe('datasetFor a run below the root (a layout)', () => {
  it('keeps the levels, which ZFS must allow, and maps only the run within the whole 255 bytes', () => {
    expect(datasetFor(ROOTFS, 'exp 1/sample:A/run1', false)).toEqual({ dataset: `${ROOTFS}/exp 1/sample:A/run1`, mapped: false });
    const mapped = datasetFor(ROOTFS, 'exp/sample/run#1', true);
    expect(mapped).toEqual({ dataset: `${ROOTFS}/exp/sample/${mapName(`${ROOTFS}/exp/sample`, 'run#1')!}`, mapped: true });
    const long = datasetFor(ROOTFS, `exp/sample/${'r'.repeat(250)}`, true);
    expect('dataset' in long && Buffer.byteLength(long.dataset)).toBe(MAX_DATASET_NAME);
    expect(datasetFor(ROOTFS, 'exp#1/sample/run', true)).toMatchObject({
      mappable: false,
      problem: expect.stringMatching(/^its level "exp#1"/),
    });
  });

  it('names the directory of a nested dataset by its path, the last component its recorded name', () => {
    expect(directoryOf(ROOTFS, dataset(`${ROOTFS}/exp/sample/run1`))).toBe('exp/sample/run1');
    const nested = dataset(`${ROOTFS}/exp/sample/${mapName(`${ROOTFS}/exp/sample`, 'run#1')!}`, encodeName('run#1'));
    expect(directoryOf(ROOTFS, nested)).toBe('exp/sample/run#1');
  });
});

describe('the recorded name (PROP_NAME)', () => {
  it('round-trips any name, as one line of printable ASCII', () => {
    for (const name of ['run#1 @lab', '50%', 'Lauf über Nacht', '実験', 'a\tb', '%41']) {
      const value = encodeName(name);
      expect(value).toMatch(/^[\x20-\x7e]+$/);
      expect(decodeName(value)).toBe(name);
    }
    expect(encodeName('run#1 @lab')).toBe('run#1 @lab');
  });

  it('reads unset, and values that are not its encoding, as no name', () => {
    for (const value of [undefined, '', '-', '%', '%zz', '%41']) expect(decodeName(value)).toBeUndefined();
  });

  it('names the directory of a dataset: the recorded name, else the last component', () => {
    expect(directoryOf(ROOTFS, dataset(`${ROOTFS}/run1`))).toBe('run1');
    expect(directoryOf(ROOTFS, dataset(`${ROOTFS}/${mapName(ROOTFS, 'run#1')!}`, encodeName('run#1')))).toBe('run#1');
    // A recorded name that is not one directory name is not believed.
    for (const bad of ['a/b', '..', '.', 'a%00b'])
      expect(directoryOf(ROOTFS, dataset(`${ROOTFS}/x_1`, encodeName(bad.replace('%00', '\0'))))).toBe('x_1');
  });
});
