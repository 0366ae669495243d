/** A plugin's context.log is named after the plugin: its lines can be attributed. */
import { closeSync, fstatSync, openSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syslogLine } from '../../plugins/syslog/index.js';
import { createHooks } from '../../src/core/hooks.js';
import { loadPlugins } from '../../src/core/loader.js';
import { writeFileAtomic } from '../../src/core/fsutil.js';
import { createLogger, formatRecord, inJournal, localTimestamp, stderrIsJournal, stderrLine, stderrSink } from '../../src/core/logger.js';
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

describe('stderr lines', () => {
  it('elsewhere: the local time (ISO 8601, milliseconds, UTC offset), the program, the level, the text', () => {
    const time = new Date(2026, 10, 27, 9, 1, 2, 34);
    const offset = -time.getTimezoneOffset();
    const zone = `${offset >= 0 ? '+' : '-'}${String(Math.trunc(Math.abs(offset) / 60)).padStart(2, '0')}:${String(Math.abs(offset) % 60).padStart(2, '0')}`;
    expect(localTimestamp(time)).toBe(`2026-11-27T09:01:02.034${zone}`);
    expect(stderrLine('notice', '[d] converted into tank/d', { journal: false, time })).toBe(
      `2026-11-27T09:01:02.034${zone} zfs-dynamic-creator: NOTICE: [d] converted into tank/d`,
    );
    // The same instant, parsed back: the text is a real timestamp.
    expect(new Date(localTimestamp(time)).getTime()).toBe(time.getTime());
  });

  it('to the journal: the sd-daemon priority prefix, no time, no program name', () => {
    const cases = [
      ['debug', 7],
      ['info', 6],
      ['notice', 5],
      ['warning', 4],
      ['error', 3],
    ] as const;
    for (const [level, n] of cases) expect(stderrLine(level, 'x', { journal: true })).toBe(`<${n}>${level.toUpperCase()}: x`);
  });

  it('knows the journal by the device and inode JOURNAL_STREAM names, not by the variable alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zdc-journal-'));
    try {
      await writeFile(join(dir, 'a'), '');
      await writeFile(join(dir, 'b'), '');
      const fd = openSync(join(dir, 'a'), 'a');
      try {
        const s = fstatSync(fd);
        const other = fstatSync(openSync(join(dir, 'b'), 'r'));
        expect(stderrIsJournal({ JOURNAL_STREAM: `${s.dev}:${s.ino}` }, fd)).toBe(true);
        expect(stderrIsJournal({ JOURNAL_STREAM: `${other.dev}:${other.ino}` }, fd)).toBe(false);
        expect(stderrIsJournal({}, fd)).toBe(false);
        expect(stderrIsJournal({ JOURNAL_STREAM: 'garbage' }, fd)).toBe(false);
      } finally {
        closeSync(fd);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('marks the records it wrote to the journal (the syslog plugin skips those), and only those', () => {
    const journal = stderrSink({ quiet: false, verbose: false, journal: true });
    const plain = stderrSink({ quiet: false, verbose: false, journal: false });
    const quiet = stderrSink({ quiet: true, verbose: false, journal: true });
    const record = (level: LogRecord['level']): LogRecord => ({ level, message: 'm', time: new Date() });
    const a = record('info');
    const b = record('debug');
    const c = record('info');
    const d = record('info');
    const e = record('error');
    const write = process.stderr.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      journal(a);
      journal(b); // below stderr's level: not written, so not in the journal
      plain(c);
      quiet(d);
      quiet(e);
    } finally {
      process.stderr.write = write;
    }
    expect([a, b, c, d, e].map(inJournal)).toEqual([true, false, false, false, true]);
  });
});

describe('writeFileAtomic', () => {
  it('keeps the mode whatever the umask (the units run with UMask=0077)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'zdc-umask-'));
    const old = process.umask(0o077);
    try {
      const file = join(dir, 'exports');
      await writeFile(file, 'x\n', { mode: 0o644 });
      await import('node:fs/promises').then((fs) => fs.chmod(file, 0o644));
      await writeFileAtomic(file, 'y\n');
      expect((await stat(file)).mode & 0o777).toBe(0o644);
      await writeFileAtomic(join(dir, 'new'), 'z\n');
      expect((await stat(join(dir, 'new'))).mode & 0o777).toBe(0o644);
    } finally {
      process.umask(old);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
