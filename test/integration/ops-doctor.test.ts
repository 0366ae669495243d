/**
 * doctor through the real CLI on a real pool: a good config passes (exit 0); a misspelt ZFS
 * property and a value the pool refuses fail, naming the file, roots[0].plugins[i] and the key;
 * a YAML syntax error says its line and column; a PATH without rsync fails; --json is the
 * versioned envelope. Trying the values leaves no dataset behind.
 */
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, createPool, datasets, fastPlugins, writeConfig, type TestPool } from '../helpers/zfs.js';

let p: TestPool;

interface Report {
  version: number;
  command: string;
  config: string | null;
  ok: boolean;
  checks: { check: string; status: 'ok' | 'warn' | 'info' | 'fail'; detail: string }[];
}

beforeAll(async () => {
  p = await createPool('doctor');
});
afterAll(async () => {
  await p?.destroy();
});

const doctor = async (config: string, json = true, env?: Record<string, string>) => {
  const r = await cli(['--config', config, 'doctor', ...(json ? ['--json'] : [])], { stateDir: p.stateDir, ...(env ? { env } : {}) });
  return { ...r, report: json ? (JSON.parse(r.stdout) as Report) : undefined };
};

describe('doctor', () => {
  it('passes a good config: every check ok (or info), properties tried on a throwaway child that is gone after', async () => {
    const config = await writeConfig(
      p,
      fastPlugins({ zfs: { properties: { compression: 'on', quota: '100M', 'org.example:owner': 'lab' } } }),
    );
    const r = await doctor(config);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(r.report).toMatchObject({ version: 1, command: 'doctor', config, ok: true });
    const by = new Map(r.report!.checks.map((c) => [c.check, c]));
    expect(r.report!.checks.filter((c) => c.status === 'fail')).toEqual([]);
    expect(by.get('config')).toMatchObject({ status: 'ok' });
    expect(by.get('roots[0].mount')).toMatchObject({ status: 'ok', detail: `${p.pool} is mounted at "${p.mount}"` });
    expect(by.get('roots[0].properties')).toMatchObject({ status: 'ok' });
    expect(by.get('roots[0].properties')!.detail).toContain('compression=on quota=100M');
    expect(by.get('binary rsync')).toMatchObject({ status: 'ok' });
    expect(by.get('binary rsync')!.detail).toMatch(/rsync +version/);
    expect(by.get('binary flock')).toMatchObject({ status: 'ok' });
    expect(by.get('zfs implementation')!.status).toBe('ok');
    expect(by.get('incron')).toMatchObject({ status: 'info' });
    expect(by.get('jobs')).toMatchObject({ status: 'ok', detail: 'no interrupted job, no leftover' });
    // Nothing left of the trial.
    expect((await datasets(p.pool)).map((d) => d.name)).toEqual([p.pool]);

    const text = await doctor(config, false);
    expect(text.exitCode).toBe(0);
    expect(text.stdout).toMatch(/^ok +roots\[0\]\.mount +/m);
    expect(text.stdout).toMatch(/^all checks passed: \d+ ok, 0 warning\(s\), 0 failed$/m);
  });

  it("checks the metrics textfile's directory: ok when writable, a failure naming metrics.textfile when missing", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zdc-prom-'));
    try {
      const good = await writeConfig(p, fastPlugins(), { metrics: { textfile: join(dir, 'zdc.prom') } }, 'metrics-good.json');
      const r = await doctor(good);
      expect(r.report!.checks.find((c) => c.check === 'metrics')).toMatchObject({ status: 'ok' });
      expect(r.exitCode, r.stdout).toBe(0);
      const missing = join(dir, 'no such dir', 'zdc.prom');
      const bad = await writeConfig(p, fastPlugins(), { metrics: { textfile: missing } }, 'metrics-bad.json');
      const b = await doctor(bad);
      expect(b.exitCode).toBe(1);
      expect(b.report!.checks.find((c) => c.check === 'metrics')).toEqual({
        check: 'metrics',
        status: 'fail',
        detail: `config ${bad}: metrics.textfile: ${join(dir, 'no such dir')}: ENOENT (node_exporter's textfile directory must exist and be writable)`,
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('fails a misspelt property and a refused value, naming the file, roots[0].plugins[2] and the key', async () => {
    const config = await writeConfig(p, fastPlugins({ zfs: { properties: { compresion: 'on', quota: 'lots' } } }));
    const r = await doctor(config, false);
    expect(r.exitCode, r.stdout).toBe(1);
    expect(r.stdout).toContain(
      `FAIL  roots[0].properties  config ${config}: roots[0].plugins[2][1].properties.compresion: ${p.pool}'s pool has no property "compresion" (did you mean "compression"?)`,
    );
    expect(r.stdout).toMatch(
      new RegExp(
        `^FAIL +roots\\[0\\]\\.properties +config ${config.replace(/[.]/g, '\\.')}: roots\\[0\\]\\.plugins\\[2\\]\\[1\\]\\.properties\\.quota: "lots" is refused by ${p.pool}'s pool: .*lots`,
        'm',
      ),
    );
    expect(r.stdout).toMatch(/^some checks FAILED: .* 2 failed$/m);
    expect((await datasets(p.pool)).map((d) => d.name)).toEqual([p.pool]);
  });

  it('gives the line and column of a YAML syntax error (and so does every other command)', async () => {
    const file = join(p.work, 'broken.yaml');
    await writeFile(file, `stateDir: ${p.stateDir}\nroots:\n  - rootfs: ${p.pool}\n     rootdir: ${p.mount}\n`);
    const r = await doctor(file);
    expect(r.exitCode).toBe(1);
    expect(r.report!.checks.find((c) => c.check === 'config')).toEqual({
      check: 'config',
      status: 'fail',
      detail: `config ${file}: YAML syntax error at line 4, column 13: bad indentation of a mapping entry`,
    });
    const status = await cli(['--config', file, 'status'], { stateDir: p.stateDir });
    expect(status.exitCode).toBe(2);
    expect(status.stderr.trim()).toBe(
      `zfs-dynamic-creator: config ${file}: YAML syntax error at line 4, column 13: bad indentation of a mapping entry`,
    );
  });

  it('fails when rsync is not on the PATH', async () => {
    const config = await writeConfig(p, fastPlugins());
    const bin = await mkdtemp(join(tmpdir(), 'zdc-bin-'));
    try {
      for (const tool of ['zfs', 'zpool', 'flock']) {
        const path = (await execa('which', [tool])).stdout.trim();
        await symlink(path, join(bin, tool));
      }
      const r = await doctor(config, true, { PATH: bin });
      expect(r.exitCode).toBe(1);
      const rsync = r.report!.checks.find((c) => c.check === 'binary rsync');
      expect(rsync).toEqual({
        check: 'binary rsync',
        status: 'fail',
        detail: `rsync: not found in PATH (${bin}); the rsync plugin (roots[0].plugins[3]) copies with it`,
      });
      expect(r.report!.checks.filter((c) => c.status === 'fail').map((c) => c.check)).toEqual(['binary rsync']);
    } finally {
      await rm(bin, { recursive: true, force: true });
    }
  });

  it("fails a root whose directory is not its dataset's mountpoint", async () => {
    const elsewhere = join(p.work, 'not-the-mount');
    await mkdir(elsewhere);
    const file = join(p.work, 'wrong-dir.json');
    await writeFile(
      file,
      JSON.stringify({ stateDir: p.stateDir, roots: [{ rootfs: p.pool, rootdir: elsewhere, plugins: fastPlugins() }] }),
    );
    const r = await doctor(file);
    expect(r.exitCode).toBe(1);
    expect(r.report!.checks.find((c) => c.check === 'roots[0].mount')).toEqual({
      check: 'roots[0].mount',
      status: 'fail',
      detail: `config ${file}: roots[0].rootdir: "${elsewhere}" is not where ${p.pool} is mounted ("${p.mount}")`,
    });
  });
});
