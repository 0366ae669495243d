/**
 * The contract table is the one source of the lifecycle's names and rules: the hooks are made
 * from it, every list of hook or phase names derives from it, and what taps return is checked
 * against it. This test fails when anything disagrees with it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AsyncSeriesBailHook, AsyncSeriesHook, AsyncSeriesWaterfallHook, SyncHook } from 'tapable';
import faultInjection from '../../plugins/fault-injection/index.js';
import { AFTER_COMMIT, CONTRACT, HOOK_ORDER, JOURNALLED_PHASES, PHASE_ORDER, STAGE, type HookKind } from '../../src/core/contract.js';
import { createHooks } from '../../src/core/hooks.js';
import * as core from '../../src/core/index.js';
import type { Job } from '../../src/core/types.js';

const CLASSES: Record<HookKind, unknown> = {
  series: AsyncSeriesHook,
  bail: AsyncSeriesBailHook,
  waterfall: AsyncSeriesWaterfallHook,
  sync: SyncHook,
};

describe('the contract table', () => {
  it('makes every hook: the same names, in its order, of its kind, with its argument names', () => {
    const hooks = createHooks();
    expect(Object.keys(hooks)).toEqual([...HOOK_ORDER]);
    expect([...HOOK_ORDER]).toEqual(Object.keys(CONTRACT));
    for (const name of HOOK_ORDER) {
      // tapable's hook "classes" are factories that set the made hook's constructor to themselves.
      const hook = hooks[name] as unknown as { _args: string[]; constructor: unknown };
      const kinds = Object.entries(CLASSES)
        .filter(([, cls]) => hook.constructor === cls)
        .map(([kind]) => kind);
      expect({ name, kinds }).toEqual({ name, kinds: [CONTRACT[name].kind] });
      expect({ name, args: hook._args }).toEqual({ name, args: [...CONTRACT[name].args] });
    }
  });

  it('is where the phase lists come from, and they are the lifecycle', () => {
    expect([...PHASE_ORDER]).toEqual(['filter', 'wait', 'provision', 'migrate', 'swap', 'publish', 'cleanup']);
    expect([...PHASE_ORDER]).toEqual(HOOK_ORDER.filter((h) => CONTRACT[h].phase));
    // Only the deciding phases come before the journal, and they come first.
    expect([...JOURNALLED_PHASES]).toEqual(PHASE_ORDER.slice(PHASE_ORDER.length - JOURNALLED_PHASES.length));
    expect([...JOURNALLED_PHASES]).toEqual(['provision', 'migrate', 'swap', 'publish', 'cleanup']);
    // Recovery re-runs from the phase holding the commit point to the end.
    expect([...AFTER_COMMIT]).toEqual(JOURNALLED_PHASES.slice(JOURNALLED_PHASES.indexOf('swap')));
    // The package exports these very lists, not copies.
    expect(core.PHASE_ORDER).toBe(PHASE_ORDER);
    expect(core.HOOK_ORDER).toBe(HOOK_ORDER);
    expect(core.AFTER_COMMIT).toBe(AFTER_COMMIT);
  });

  it('says which hooks run in a dry run, as the engine does: not wait, step, rollback or run', () => {
    expect(HOOK_ORDER.filter((h) => !CONTRACT[h].dryRun)).toEqual(['wait', 'step', 'rollback', 'run']);
    expect(HOOK_ORDER.filter((h) => CONTRACT[h].required)).toEqual(['provision', 'migrate', 'swap']);
  });

  it("is where fault-injection's phases come from: every journalled phase, nothing else", () => {
    const parse = (killAt: string) => faultInjection.options!.parse({ killAt });
    for (const phase of JOURNALLED_PHASES) expect(() => parse(phase)).not.toThrow();
    for (const phase of PHASE_ORDER.filter((p) => !JOURNALLED_PHASES.includes(p as never)))
      expect(() => parse(phase)).toThrow(/a phase \(provision, migrate, swap, publish, cleanup\)/);
    expect(() => parse('rollback')).toThrow();
  });

  it('states the order between plugins within a phase by name', () => {
    expect(STAGE.commit).toBeLessThan(STAGE.catchUp);
    expect(STAGE.retire).toBeLessThan(STAGE.finish);
    const named = [STAGE.commit, STAGE.catchUp, STAGE.retire, STAGE.finish];
    expect(STAGE.first).toBeLessThan(Math.min(...named));
    expect(STAGE.last).toBeGreaterThan(Math.max(...named));
  });

  it('is what the Hooks interface lists, in the order they run; the hooks object is frozen', () => {
    const source = readFileSync(new URL('../../src/core/hooks.ts', import.meta.url), 'utf8');
    const body = source.slice(
      source.indexOf('export interface Hooks {'),
      source.indexOf('\n}\n', source.indexOf('export interface Hooks {')),
    );
    expect([...body.matchAll(/^ {2}readonly (\w+):/gm)].map((m) => m[1])).toEqual([...HOOK_ORDER]);
    const hooks = createHooks();
    expect(Object.isFrozen(hooks)).toBe(true);
    expect(() => Object.assign(hooks, { publish: hooks.cleanup })).toThrow(TypeError);
  });
});

describe('what taps return is checked against the contract', () => {
  const job = { name: 'd' } as unknown as Job;

  it('a filter tap returning the wrong shape is an error naming it, whatever kind of tap it is', async () => {
    const sync = createHooks();
    sync.filter.tap('bad-sync', () => ({ skipp: 'typo' }) as never);
    await expect(sync.filter.promise(job)).rejects.toThrow(
      /^plugin "bad-sync": its filter tap returned \{"skipp":"typo"\}; expected undefined or \{ skip: a non-empty string \}/,
    );

    const promised = createHooks();
    promised.filter.tapPromise('bad-promise', async () => 'no' as never);
    await expect(promised.filter.promise(job)).rejects.toThrow(/plugin "bad-promise": its filter tap returned "no"/);

    const callback = createHooks();
    callback.filter.tapAsync('bad-callback', (_job, done) => done(null, { skip: '' }));
    await expect(callback.filter.promise(job)).rejects.toThrow(/plugin "bad-callback": its filter tap returned \{"skip":""\}/);
  });

  it('a right shape passes through unchanged, and the bail stops at it', async () => {
    const hooks = createHooks();
    const seen: string[] = [];
    hooks.filter.tap('first', () => {
      seen.push('first');
      return undefined;
    });
    hooks.filter.tapPromise('second', async () => ({ skip: 'not ours' }));
    hooks.filter.tap('third', () => {
      seen.push('third');
      return undefined;
    });
    await expect(hooks.filter.promise(job)).resolves.toEqual({ skip: 'not ours' });
    expect(seen).toEqual(['first']);
  });

  it('checks wait and assess too', async () => {
    const hooks = createHooks();
    hooks.wait.tapPromise('waiter', async () => ({ defer: 42 }) as never);
    await expect(hooks.wait.promise(job)).rejects.toThrow(/plugin "waiter": its wait tap returned \{"defer":42\}/);
    hooks.assess.tapPromise('assessor', async () => ({ committed: 'yes' }) as never);
    await expect(hooks.assess.promise(job)).rejects.toThrow(/plugin "assessor": its assess tap returned .*committed: boolean/);
    const good = createHooks();
    good.assess.tapPromise('assessor', async () => ({ committed: false, nothingLeft: true }));
    await expect(good.assess.promise(job)).resolves.toEqual({ committed: false, nothingLeft: true });
  });
});
