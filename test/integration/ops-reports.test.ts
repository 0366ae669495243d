/**
 * doctor and history know no plugin: each plugin gives its own checks and history fields through
 * the doctor and history hooks. A site plugin's checks are lines of `doctor` (a check of the
 * machine once, one of the root with its fix), its field of each conversion is in `history`; and
 * history lists the datasets with the zfs plugin's own `command`.
 */
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROJECT, cli, createPool, fastPlugins, writeConfig, zfs, type TestPool } from '../helpers/zfs.js';
import { makeTree } from '../helpers/tree.js';

let p: TestPool;
const PROPERTY = 'org.example:ticket';

beforeAll(async () => {
  p = await createPool('reports');
  // One conversion for history to list, with the site's property set on its dataset.
  await makeTree(join(p.mount, 'run 1'), 3);
  const config = await writeConfig(p, fastPlugins(), {}, 'plain.json');
  const r = await cli(['--config', config, 'handle', join(p.mount, 'run 1')], { stateDir: p.stateDir });
  expect(r.exitCode, r.stderr).toBe(0);
  await zfs('set', `${PROPERTY}=T-7`, `${p.pool}/run 1`);
}, 300_000);
afterAll(async () => {
  await p?.destroy();
});

/** A site plugin as a site writes it, with the plugin API's run. */
const SITE_PLUGIN = `
import { run } from ${JSON.stringify(pathToFileURL(join(PROJECT, 'dist', 'src', 'index.js')).href)};
export default {
  name: 'site-ticket',
  apply(hooks, { options }) {
    hooks.doctor.tapPromise('site-ticket', async (checks, doctor) => [
      ...checks,
      ...(doctor.once('ticket desk') ? [{ name: 'ticket desk', status: 'ok', message: 'answers (' + doctor.pluginAt('site-ticket') + ')' }] : []),
      { name: doctor.label + '.ticket', status: 'warn', message: doctor.optionAt('site-ticket', ['property']) + ': ' + doctor.rootfs + ' has none', fix: ['zfs', 'set', options.property + '=T-1', doctor.rootfs] },
    ]);
    hooks.history.tapPromise('site-ticket', (entries) => Promise.all(entries.map(async (e) => {
      const value = (await run('zfs', ['get', '-H', '-o', 'value', options.property, e.filesystem])).stdout.trim();
      return { ...e, fields: [...e.fields, value === '-' ? { key: 'ticket', value: null } : { key: 'ticket', value, text: 'ticket ' + value }] };
    })));
  },
};
`;

interface Check {
  check: string;
  status: string;
  detail: string;
}

describe('plugins report through doctor and history', () => {
  it("a site plugin's checks are doctor's lines, and its field of each conversion is history's", async () => {
    const plugin = join(p.work, 'site-ticket.mjs');
    await writeFile(plugin, SITE_PLUGIN);
    const config = await writeConfig(p, fastPlugins({ more: [[plugin, { property: PROPERTY }]] }), {}, 'site.json');

    const d = await cli(['--config', config, 'doctor', '--json'], { stateDir: p.stateDir });
    const checks = (JSON.parse(d.stdout) as { checks: Check[] }).checks;
    expect(
      checks.filter((c) => c.status === 'fail'),
      d.stdout,
    ).toEqual([]);
    expect(d.exitCode, d.stdout).toBe(0);
    expect(checks.filter((c) => c.check === 'ticket desk')).toEqual([
      { check: 'ticket desk', status: 'ok', detail: 'answers (roots[0].plugins[4])' },
    ]);
    expect(checks.find((c) => c.check === 'roots[0].ticket')).toEqual({
      check: 'roots[0].ticket',
      status: 'warn',
      detail: `config ${config}: roots[0].plugins[4][1].property: ${p.pool} has none: zfs set ${PROPERTY}=T-1 ${p.pool}`,
    });
    // The builtins' own checks are there beside it.
    expect(checks.find((c) => c.check === 'roots[0].mount')).toMatchObject({ status: 'ok' });
    expect(checks.find((c) => c.check === 'binary rsync')).toMatchObject({ status: 'ok' });

    const text = await cli(['--config', config, 'doctor'], { stateDir: p.stateDir });
    expect(text.stdout).toMatch(/^warn +roots\[0\]\.ticket +config .*: .* has none: zfs set org\.example:ticket=T-1 /m);
    expect(text.stdout).toMatch(/^all checks passed: \d+ ok, 1 warning\(s\), 0 failed$/m);

    const h = await cli(['--config', config, 'history', '--json'], { stateDir: p.stateDir });
    expect(h.exitCode, h.stderr).toBe(0);
    const conversions = (JSON.parse(h.stdout) as { roots: { conversions: Record<string, unknown>[] }[] }).roots[0]!.conversions;
    expect(conversions).toHaveLength(1);
    expect(conversions[0]).toMatchObject({ dataset: `${p.pool}/run 1`, ticket: 'T-7', files: expect.any(Number) as unknown });
    const lines = await cli(['--config', config, 'history'], { stateDir: p.stateDir });
    expect(lines.stdout).toMatch(new RegExp(`${p.pool}/run 1: .*, by zfs-dynamic-creator \\S+, ticket T-7$`, 'm'));
  });

  it("history lists the datasets with the zfs plugin's command", async () => {
    const log = join(p.work, 'zfs-calls.log');
    const wrapper = join(p.work, 'zfs-logged');
    await writeFile(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec zfs "$@"\n`);
    await chmod(wrapper, 0o755);
    const config = await writeConfig(p, fastPlugins({ zfs: { command: wrapper } }), {}, 'wrapped.json');
    const h = await cli(['--config', config, 'history', '--json'], { stateDir: p.stateDir });
    expect(h.exitCode, h.stderr).toBe(0);
    expect(
      (JSON.parse(h.stdout) as { roots: { conversions: { dataset: string }[] }[] }).roots[0]!.conversions.map((c) => c.dataset),
    ).toEqual([`${p.pool}/run 1`]);
    const calls = (await readFile(log, 'utf8')).split('\n').filter(Boolean);
    expect(calls).toContainEqual(
      expect.stringMatching(new RegExp(`^list -H -r -d 1 -t filesystem -o name,mountpoint,org\\.zfs-dynamic-creator:state,.* ${p.pool}$`)),
    );
  });
});
