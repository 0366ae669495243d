/**
 * handle --no-wait: the new filesystem is live and published when it returns; the grace period,
 * the verification and the removal of the original are left to the next run for the root.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';
import { helperPath, leftovers } from '../helpers/state.js';

let p: TestPool;
let config: string;

beforeAll(async () => {
  p = await createPool('nowait');
  config = await writeConfig(p, fastPlugins({ rsync: { graceSeconds: 2 } }));
});
afterAll(async () => {
  await p?.destroy();
});

describe('handle --no-wait', () => {
  it('returns once live and published, the original kept in the holding directory; recover finishes the cleanup', async () => {
    const dir = join(p.mount, 'quick');
    await mkdir(dir);
    await writeFile(join(dir, 'a.txt'), 'a\n');
    const r = await cli(['--config', config, 'handle', '--no-wait', dir], { stateDir: p.stateDir });
    expect({ exitCode: r.exitCode, stderr: r.stderr }).toMatchObject({ exitCode: 0 });
    expect(r.stderr).toMatch(/converted into \S+\/quick, live and published; the cleanup is left to the next run for this root/);
    expect(r.stderr).not.toMatch(/remove the verified original/);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/quick`, mountpoint: dir, mounted: 'yes', state: 'swapped' });
    expect(await readFile(join(dir, 'a.txt'), 'utf8')).toBe('a\n');
    expect(await readdir(helperPath(p, 'quick', 'orig'))).toEqual(['a.txt']);
    const jobs = await readdir(join(p.stateDir, 'jobs'));
    expect(jobs).toHaveLength(1);
    expect(JSON.parse(await readFile(join(p.stateDir, 'jobs', jobs[0]!), 'utf8'))).toMatchObject({
      status: 'cleanup-pending',
      committed: true,
    });

    // A second --no-wait run for another directory does not wait out the first one's grace period.
    const other = join(p.mount, 'other');
    await mkdir(other);
    const second = await cli(['--config', config, 'handle', '--no-wait', other], { stateDir: p.stateDir });
    expect(second.exitCode).toBe(0);
    expect(second.stderr).not.toMatch(/\[quick\]/);

    const rec = await cli(['--config', config, 'recover'], { stateDir: p.stateDir });
    expect({ exitCode: rec.exitCode, out: rec.stdout + rec.stderr }).toMatchObject({ exitCode: 0 });
    expect(rec.stdout).toMatch(/recovered .*quick.*finished the cleanup a run left to it/);
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/quick`, mountpoint: dir, mounted: 'yes', state: 'live' });
    expect(await datasets(p.pool)).toContainEqual({ name: `${p.pool}/other`, mountpoint: other, mounted: 'yes', state: 'live' });
    expect(await leftovers(p)).toEqual([]);
  });
});
