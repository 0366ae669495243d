/**
 * The rest of issue 24 through the real CLI on a real pool: --dry-run changes nothing where it is
 * offered (doctor tries no property value on a probe dataset) and is refused where it would mean
 * nothing; every human output in the system's time zone with its offset, JSON in UTC.
 */
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';

let p: TestPool;

beforeAll(async () => {
  p = await createPool('rest');
});
afterAll(async () => {
  await p?.destroy();
});

describe('--dry-run changes nothing, or is not offered', () => {
  it('doctor --dry-run makes no probe dataset and says so; status, history, list-plugins, check-config refuse it', async () => {
    // A value the pool refuses is found only by the probe: a dry run does not make it.
    const config = await writeConfig(p, fastPlugins({ zfs: { properties: { quota: 'lots' } } }), {}, 'dry.json');
    const real = await cli(['--config', config, 'doctor'], { stateDir: p.stateDir });
    expect(real.exitCode).toBe(1);
    expect(real.stdout).toMatch(/quota: "lots" is refused by/);
    const dry = await cli(['--config', config, '--dry-run', 'doctor'], { stateDir: p.stateDir });
    expect(dry.stdout).toMatch(/knows quota \(their values not tried: a dry run makes no probe dataset\)/);
    expect(dry.stdout).not.toMatch(/is refused by/);
    const dry2 = await cli(['--config', config, 'doctor', '--dry-run'], { stateDir: p.stateDir });
    expect(dry2.stdout).toMatch(/a dry run makes no probe dataset/);
    expect((await datasets(p.pool)).map((d) => d.name)).toEqual([p.pool]);

    for (const command of ['status', 'history', 'list-plugins', 'check-config']) {
      for (const args of [
        [command, '--dry-run'],
        ['--dry-run', command],
      ]) {
        const r = await cli(['--config', config, ...args], { stateDir: p.stateDir });
        expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toContain(`${command} changes nothing: --dry-run is not offered there`);
      }
      const help = await cli([command, '--help'], { stateDir: p.stateDir });
      expect(help.stdout).not.toContain('--dry-run');
    }
  });
});

describe('one time zone', () => {
  it('log lines, status and doctor in the local time with its offset; JSON in UTC', async () => {
    const config = await writeConfig(p, fastPlugins(), {}, 'tz.json');
    const env = { TZ: 'Asia/Kolkata' };
    const bad = join(p.mount, 'bad name@tz');
    await mkdir(bad);
    const r = await cli(['--config', config, 'reconcile'], { stateDir: p.stateDir, env });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+05:30 zfs-dynamic-creator: /m);
    const local = /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+05:30/.source;
    const status = await cli(['--config', config, 'status'], { stateDir: p.stateDir, env });
    expect(status.stdout).toMatch(new RegExp(`"bad name@tz" needs attention: .*\\(refused at ${local},`));
    const doctor = await cli(['--config', config, 'doctor'], { stateDir: p.stateDir, env });
    expect(doctor.stdout).toMatch(new RegExp(`"[^"]*bad name@tz" needs attention: .*\\(refused at ${local};`));
    const again = await cli(['--config', config, 'reconcile', '--json'], { stateDir: p.stateDir, env });
    const job = (JSON.parse(again.stdout) as { roots: { jobs: { name: string; message: string }[] }[] }).roots[0]!.jobs.find(
      (j) => j.name === 'bad name@tz',
    );
    expect(job?.message).toMatch(new RegExp(`^refused \\(remembered since ${local}\\)`));
    const json = JSON.parse((await cli(['--config', config, 'status', '--json'], { stateDir: p.stateDir, env })).stdout) as {
      roots: { refused: { name: string; since?: string }[] }[];
    };
    expect(json.roots[0]!.refused.find((x) => x.name === 'bad name@tz')?.since).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await rm(bad, { recursive: true });
  });
});

describe('"no such directory" once', () => {
  it('handle of a mistyped path: one line, exit 2; from incron (--event), gone before its turn: one notice, exit 0', async () => {
    const config = await writeConfig(p, fastPlugins(), {}, 'missing.json');
    const target = join(p.mount, 'mistyped');
    const r = await cli(['--config', config, 'handle', target], { stateDir: p.stateDir });
    expect(r.exitCode).toBe(2);
    const said = r.stderr.split('\n').filter((l) => l.includes('mistyped'));
    expect(said).toHaveLength(1);
    expect(said[0]).toBe(`zfs-dynamic-creator: no such directory: ${JSON.stringify(target)}`);
    expect(r.stderr).not.toContain('vanished');
    const incron = await cli(['--config', config, 'handle', '--event', 'IN_CREATE,IN_ISDIR', target], { stateDir: p.stateDir });
    expect(incron.exitCode).toBe(0);
    const once = incron.stderr.split('\n').filter((l) => l.includes('mistyped'));
    expect(once).toHaveLength(1);
    expect(once[0]).toBe(`zfs-dynamic-creator: no such directory: ${JSON.stringify(target)} (gone before its turn); nothing to do`);
  });
});

describe('a config path from the environment', () => {
  it('ZFS_DYNAMIC_CREATOR_CONFIG is used when --config is not given; --config wins; the same trust checks', async () => {
    const good = await writeConfig(p, fastPlugins(), {}, 'env-good.json');
    const other = await writeConfig(p, fastPlugins(), {}, 'env-other.json');
    type Checked = { config: string | null; ok: boolean; problems: string[] };
    const check = async (args: string[], env: Record<string, string>) => {
      const r = await cli([...args, 'check-config', '--json'], { stateDir: p.stateDir, env });
      return { ...r, json: JSON.parse(r.stdout || '{}') as Checked };
    };
    const byEnv = await check([], { ZFS_DYNAMIC_CREATOR_CONFIG: good });
    expect(byEnv.exitCode, byEnv.stderr).toBe(0);
    expect(byEnv.json).toMatchObject({ config: good, ok: true });
    const wins = await check(['--config', other], { ZFS_DYNAMIC_CREATOR_CONFIG: good });
    expect(wins.json.config).toBe(other);
    // The same checks as --config: a file others may write is refused, a missing one named.
    await chmod(good, 0o666);
    try {
      const loose = await cli(['status'], { stateDir: p.stateDir, env: { ZFS_DYNAMIC_CREATOR_CONFIG: good } });
      expect(loose.exitCode).toBe(2);
      expect(loose.stderr).toContain(`config ${good}: refused:`);
      expect(loose.stderr).toContain('writable by');
    } finally {
      await chmod(good, 0o600);
    }
    const missing = await cli(['status'], { stateDir: p.stateDir, env: { ZFS_DYNAMIC_CREATOR_CONFIG: join(p.work, 'nope.json') } });
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr).toContain(`config ${join(p.work, 'nope.json')}: no such file`);
  });
});

describe('--summary for cron and mail', () => {
  it('reconcile --summary: one line per job that is news, nothing on stderr but errors; nothing at all when nothing is new', async () => {
    const config = await writeConfig(p, fastPlugins(), {}, 'summary.json');
    await mkdir(join(p.mount, 'sum-run'));
    await writeFile(join(p.mount, 'sum-run', 'data'), 'x'.repeat(5000));
    await mkdir(join(p.mount, 'sum bad@x'));
    const first = await cli(['--config', config, 'reconcile', '--summary'], { stateDir: p.stateDir });
    expect(first.exitCode, first.stderr).toBe(0); // a refusal is not a failure
    expect(first.stdout.trimEnd().split('\n').sort()).toEqual([
      expect.stringMatching(new RegExp(`^converted +${JSON.stringify(`${p.mount}/sum-run`)}: converted into ${p.pool}/sum-run: 1 file, `)),
      expect.stringMatching(new RegExp(`^refused +${JSON.stringify(`${p.mount}/sum bad@x`)}: .*cannot become a ZFS dataset`)),
    ]);
    expect(first.stderr).not.toMatch(/INFO|NOTICE/);
    const again = await cli(['--config', config, 'reconcile', '--summary'], { stateDir: p.stateDir });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(again.stdout).toBe('');
    expect(again.stderr).toBe('');
    const recover = await cli(['--config', config, 'recover', '--summary'], { stateDir: p.stateDir });
    expect(recover.exitCode).toBe(0);
    expect(recover.stdout).toBe('');
    const both = await cli(['--config', config, 'reconcile', '--summary', '--json'], { stateDir: p.stateDir });
    expect(both.exitCode).toBe(2);
    await rm(join(p.mount, 'sum bad@x'), { recursive: true });
  });
});
