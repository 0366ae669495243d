/**
 * The rest of issue 24 through the real CLI on a real pool: --dry-run changes nothing where it is
 * offered (doctor tries no property value on a probe dataset) and is refused where it would mean
 * nothing.
 */
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
      for (const args of [[command, '--dry-run'], ['--dry-run', command]]) {
        const r = await cli(['--config', config, ...args], { stateDir: p.stateDir });
        expect(r.exitCode, `${args.join(' ')}: ${r.stderr}`).toBe(2);
        expect(r.stderr).toContain(`${command} changes nothing: --dry-run is not offered there`);
      }
      const help = await cli([command, '--help'], { stateDir: p.stateDir });
      expect(help.stdout).not.toContain('--dry-run');
    }
  });
});
