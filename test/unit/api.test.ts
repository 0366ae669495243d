/** The public plugin API (the package's entry, src/index.ts): what a site plugin needs, no engine internals. */
import { describe, expect, it } from 'vitest';
import * as api from '../../src/index.js';

describe('the plugin API', () => {
  it('offers what a serious site plugin needs', () => {
    for (const name of [
      'definePlugin',
      'createHooks',
      'CONTRACT',
      'STAGE',
      'PHASE_ORDER',
      'run',
      'retry',
      'CommandError',
      'RefusedError',
      'TransientError',
      'BusyError',
      'quoteName',
      'oneLine',
      'jobPaths',
      'helperPath',
      'isHelperName',
      'acquireLock',
      'isLocked',
      'writeFileAtomic',
      'fsyncDir',
      'isErrno',
      'openDir',
      'openChild',
      'walk',
      'walkPair',
      'copyEntry',
      'removeTree',
      'treeDigest',
      'holdersOf',
      'describeHolders',
      'mountsBelow',
      'assertSameDirectory',
      'createLogger',
      'ContractError',
      'JOB_FIELDS',
      'phasesSetting',
    ]) {
      expect({ name, type: typeof (api as Record<string, unknown>)[name] }).not.toEqual({ name, type: 'undefined' });
    }
  });

  it('does not offer the engine, the journal, the loader or the command line', () => {
    for (const name of ['RootEngine', 'Journal', 'loadPlugins', 'App', 'loadConfig', 'JobImpl', 'DEFAULT_PLUGINS']) {
      expect({ name, exported: name in api }).toEqual({ name, exported: false });
    }
  });
});
