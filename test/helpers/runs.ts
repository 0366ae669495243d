/** A RootContext for tests that build one by hand: the fields given, with the root's runs. */
import type { Hooks } from '../../src/core/hooks.js';
import { runBook } from '../../src/core/runs.js';
import type { RootContext } from '../../src/core/types.js';

export function withRuns(base: Omit<RootContext, 'runs'>, hooks: Pick<Hooks, 'run'>): RootContext {
  return { ...base, runs: runBook(base, hooks) };
}
