/**
 * The doctor and history hooks: what their taps return is checked against the contract (the error
 * names the plugin), they collect in order, and a plugin is not listed as tapping them (they are
 * not the lifecycle).
 */
import { describe, expect, it } from 'vitest';
import { CONTRACT, HOOK_ORDER } from '../../src/core/contract.js';
import { createHooks } from '../../src/core/hooks.js';
import type { DoctorContext, HistoryEntry } from '../../src/core/reports.js';
import type { RootContext } from '../../src/core/types.js';

const root = { rootfs: 'tank/runs', rootdir: '/tank/runs' } as unknown as RootContext;
const doctor = { ...root, label: 'roots[0]' } as unknown as DoctorContext;
const entry: HistoryEntry = {
  filesystem: 'tank/runs/a',
  mountpoint: '/tank/runs/a',
  converted: '2026-01-01T00:00:00.000Z',
  fields: [{ key: 'files', value: 3, text: '3 file(s)' }],
};

describe('the report hooks', () => {
  it('are in the contract as report hooks, run in a dry run, required by nobody', () => {
    expect(HOOK_ORDER.filter((h) => CONTRACT[h].report)).toEqual(['doctor', 'history']);
    for (const h of ['doctor', 'history'] as const) expect(CONTRACT[h]).toMatchObject({ kind: 'waterfall', dryRun: true, required: false });
  });

  it('doctor: each tap appends its checks; a wrong shape is an error naming the plugin', async () => {
    const hooks = createHooks();
    hooks.doctor.tapPromise('fs', async (checks, ctx) => [...checks, { name: `${ctx.label}.mount`, status: 'ok', message: 'mounted' }]);
    hooks.doctor.tap('site', (checks) => [...checks, { name: 'desk', status: 'warn', message: 'slow', fix: ['desk', 'restart'] }]);
    await expect(hooks.doctor.promise([], doctor)).resolves.toEqual([
      { name: 'roots[0].mount', status: 'ok', message: 'mounted' },
      { name: 'desk', status: 'warn', message: 'slow', fix: ['desk', 'restart'] },
    ]);
    const bad = createHooks();
    bad.doctor.tap('typo', (checks) => [...checks, { name: 'x', status: 'broken', message: '' }] as never);
    await expect(bad.doctor.promise([], doctor)).rejects.toThrow(
      /^plugin "typo": its doctor tap returned .*expected an array of \{ name, status: ok\|warn\|info\|fail/,
    );
    const fix = createHooks();
    fix.doctor.tap('fix', (checks) => [...checks, { name: 'x', status: 'ok', message: '', fix: 'run me' }] as never);
    await expect(fix.doctor.promise([], doctor)).rejects.toThrow(/plugin "fix": its doctor tap/);
  });

  it("history: a plugin adds its field to each entry; history's own keys and a key twice are refused", async () => {
    const hooks = createHooks();
    hooks.history.tapPromise('fs', async (entries) => [...entries, entry]);
    hooks.history.tap('site', (entries) => entries.map((e) => ({ ...e, fields: [...e.fields, { key: 'ticket', value: null }] })));
    await expect(hooks.history.promise([], root)).resolves.toEqual([
      { ...entry, fields: [...entry.fields, { key: 'ticket', value: null }] },
    ]);
    for (const key of ['dataset', 'files']) {
      const bad = createHooks();
      bad.history.tap('fs', (entries) => [...entries, entry]);
      bad.history.tap('clash', (entries) => entries.map((e) => ({ ...e, fields: [...e.fields, { key, value: 1 }] })));
      await expect(bad.history.promise([], root)).rejects.toThrow(/^plugin "clash": its history tap returned/);
    }
  });
});
