/**
 * Issue 19 item 9, on the real pool: a job's state files after a crash. The copy manifest's last
 * change line cut short (a kill or a full disk between two chunks of an append) never wedges the
 * job: recover finishes it with every file in place. A manifest damaged in the middle stops its job
 * once, with one line naming the file, the original kept; the other jobs go on, and the next
 * recover finishes it.
 */
import { appendFile, readFile, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobId } from '../../src/core/journal.js';
import type { JobRecord } from '../../src/core/types.js';
import { leftovers } from '../helpers/state.js';
import { makeTree, describeTree } from '../helpers/tree.js';
import { cli, createPool, datasetStates, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';

let p: TestPool;
beforeAll(async () => {
  p = await createPool('siegemanifest', 256);
});
afterAll(async () => {
  await p?.destroy();
});

const manifestOf = (name: string): string => join(p.stateDir, 'manifests', `${jobId(p.mount, name)}.jsonl`);
const recordOf = async (name: string): Promise<JobRecord> =>
  JSON.parse(await readFile(join(p.stateDir, 'jobs', `${jobId(p.mount, name)}.json`), 'utf8')) as JobRecord;
/** A config that kills every job (SIGKILL) before `killAt`, once per directory. */
const killing = (killAt: string, file: string): Promise<string> =>
  writeConfig(p, fastPlugins({ more: [['fault-injection', { killAt, when: 'before' }]] }), {}, file);

describe('a torn last line in the copy manifest', () => {
  it('a kill past the commit, a late change, the last change line cut in its middle: recover finishes with every file in place', async () => {
    const plain = await writeConfig(p, fastPlugins(), {}, 'plain.json');
    const name = 'torn';
    await makeTree(join(p.mount, name), 20, 2000);
    const before = await describeTree(join(p.mount, name));

    // Killed in the grace period, past the commit: the original is kept aside.
    expect(
      (await cli(['--config', await killing('cleanup', 'kill-cleanup.json'), 'handle', join(p.mount, name)], { stateDir: p.stateDir }))
        .exitCode,
    ).not.toBe(0);
    const aside = (await recordOf(name)).aside!;
    // A late write to the original; recover catches it up (a change line appended to the
    // manifest) and is killed before the removal.
    await appendFile(join(aside, 'd1/f1.dat'), 'late line 1\n');
    expect(
      (await cli(['--config', await killing('cleanup/remove-original', 'kill-remove.json'), 'recover'], { stateDir: p.stateDir })).exitCode,
    ).not.toBe(0);
    const manifest = manifestOf(name);
    const text = await readFile(manifest, 'utf8');
    expect(text.trimEnd().split('\n').at(-1)).toMatch(/^\{"c":/);

    // The crash of an append: its last line cut in the middle. Then one more late write, which
    // the next catch-up appends a line for.
    await truncate(manifest, (await stat(manifest)).size - 9);
    await appendFile(join(aside, 'd2/f2.dat'), 'late line 2\n');
    await rm(join(p.stateDir, 'fault-injection'), { recursive: true }); // armed again
    expect(
      (await cli(['--config', await killing('cleanup/remove-original', 'kill-remove-2.json'), 'recover'], { stateDir: p.stateDir }))
        .exitCode,
    ).not.toBe(0);
    expect((await readFile(manifest, 'utf8')).endsWith('\n')).toBe(true);

    const done = await cli(['--config', plain, 'recover'], { stateDir: p.stateDir });
    expect(done.stderr).not.toMatch(/JSON|Unexpected token/);
    expect(done.exitCode, done.stderr).toBe(0);
    expect((await datasetStates(p)).get(name)).toBe('live');
    const after = await describeTree(join(p.mount, name));
    for (const [rel, entry] of before)
      if (!['d1/f1.dat', 'd2/f2.dat', '.', 'd1', 'd2'].includes(rel)) expect(after.get(rel), rel).toEqual(entry);
    expect(await readFile(join(p.mount, name, 'd1/f1.dat'), 'utf8')).toMatch(/late line 1\n$/);
    expect(await readFile(join(p.mount, name, 'd2/f2.dat'), 'utf8')).toMatch(/late line 2\n$/);
    expect(await leftovers(p)).toEqual([]);
  });
});

describe('a copy manifest damaged in the middle', () => {
  it('recover stops that job once, with one line naming the file and the original kept; the other job is finished; the next recover finishes it', async () => {
    const plain = await writeConfig(p, fastPlugins(), {}, 'plain.json');
    // Both live, their originals kept for the next run (--no-wait).
    for (const name of ['damaged', 'sound']) {
      await makeTree(join(p.mount, name), 10, 1000);
      const r = await cli(['--config', plain, 'handle', '--no-wait', join(p.mount, name)], { stateDir: p.stateDir });
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const aside = (await recordOf('damaged')).aside!;
    const before = await describeTree(aside);
    const manifest = manifestOf('damaged');
    const lines = (await readFile(manifest, 'utf8')).split('\n');
    lines.splice(2, 0, '\u0000\u0000garbage{');
    await writeFile(manifest, lines.join('\n'));

    const first = await cli(['--config', plain, 'recover'], { stateDir: p.stateDir });
    expect(first.exitCode).toBe(1);
    const said = first.stderr.split('\n').filter((l) => l.includes(manifest));
    expect(said.length, first.stderr).toBeGreaterThan(0);
    expect(said[0]).toContain(aside);
    expect(said[0]).toMatch(
      /is damaged \(line 3 does not read .* and more follow it\): moved to .*\.damaged"; the original is kept at .*; the next 'zfs-dynamic-creator recover' verifies without it/,
    );
    // The original is kept; the other job finished.
    expect(await describeTree(aside)).toEqual(before);
    expect((await datasetStates(p)).get('sound')).toBe('live');
    expect((await readdir(join(p.stateDir, 'jobs'))).sort()).toEqual([`${jobId(p.mount, 'damaged')}.json`]);

    const second = await cli(['--config', plain, 'recover'], { stateDir: p.stateDir });
    expect(second.exitCode, second.stderr).toBe(0);
    const after = await describeTree(join(p.mount, 'damaged'));
    expect(after).toEqual(before);
    expect(await leftovers(p)).toEqual([]);
  });
});
