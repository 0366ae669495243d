/** A plugin's context.log is named after the plugin: its lines can be attributed. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syslogLine } from '../../plugins/syslog/index.js';
import { createHooks } from '../../src/core/hooks.js';
import { loadPlugins } from '../../src/core/loader.js';
import { createLogger, formatRecord } from '../../src/core/logger.js';
import type { LogRecord } from '../../src/core/types.js';

describe("a plugin's logger", () => {
  it('carries the plugin name into every record, the stderr line and the syslog line', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'zdc-log-'));
    try {
      const records: LogRecord[] = [];
      const log = createLogger([(r) => records.push(r)], { rootdir: '/tank/runs' });
      await loadPlugins(['zfs', 'rsync', ['fault-injection', { killAt: 'migrate' }]], {
        hooks: createHooks(),
        root: { rootfs: 'tank/runs', rootdir: '/tank/runs' },
        log,
        dryRun: false,
        stateDir,
        baseDir: stateDir,
        where: 'config t.yaml: roots[0].plugins',
      });
      const armed = records.find((r) => r.message.startsWith('fault injection is armed'));
      expect(armed).toMatchObject({ plugin: 'fault-injection', rootdir: '/tank/runs', level: 'warning' });
      expect(formatRecord(armed!)).toBe('WARNING: [fault-injection] fault injection is armed: SIGKILL before migrate');
      expect(syslogLine(armed!)).toBe('/tank/runs: [fault-injection] fault injection is armed: SIGKILL before migrate');
    } finally {
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('a record without a plugin (the core, a job) is formatted as before', () => {
    const record: LogRecord = { level: 'info', message: 'copy', time: new Date(), dir: 'd', step: 'migrate/copy' };
    expect(formatRecord(record)).toBe('INFO: [d] copy');
    expect(formatRecord({ ...record, plugin: 'rsync' })).toBe('INFO: [rsync] [d] copy');
  });
});
