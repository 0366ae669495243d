/** Issue 24's pieces that need no pool: refusal memory, "did you mean", options as written. */
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RefusalMemory, configHash } from '../../src/core/refusals.js';
import { RefusedError, didYouMean, isPermanentRefusal } from '../../src/core/errors.js';
import { asWritten } from '../../src/commands/list-plugins.js';

describe('refusal memory', () => {
  it('stands while the directory and the config are unchanged; a change to either re-arms it', async () => {
    const base = await mkdtemp(join(tmpdir(), 'zdc-refusals-'));
    try {
      const root = join(base, 'root');
      await mkdir(join(root, 'd'), { recursive: true });
      await mkdir(join(base, 'state'));
      const memory = new RefusalMemory(join(base, 'state'), root, configHash('tank/r', ['zfs']));
      await memory.remember('d', 'over its quota');
      expect((await memory.standing('d'))?.reason).toBe('over its quota');
      expect(await new RefusalMemory(join(base, 'state'), root, configHash('tank/r', ['zfs', 'rsync'])).standing('d')).toBeUndefined();
      await new Promise((r) => setTimeout(r, 20));
      await writeFile(join(root, 'd', 'new'), 'x');
      expect(await memory.standing('d')).toBeUndefined();
      await memory.prune(new Set());
      expect(await memory.list()).toEqual([]);
    } finally {
      await rm(base, { recursive: true, force: true });
    }
  });

  it('a permanent refusal is known by its kind, through a wrapping error too', () => {
    expect(isPermanentRefusal(new RefusedError('x', { permanent: true }))).toBe(true);
    expect(isPermanentRefusal(new Error('wrapped', { cause: new RefusedError('x', { permanent: true }) }))).toBe(true);
    expect(isPermanentRefusal(new RefusedError('x'))).toBe(false);
    expect(isPermanentRefusal(new Error('over its quota'))).toBe(false);
  });
});

describe('did you mean', () => {
  it('finds the key meant, also for longer keys and other case', () => {
    expect(didYouMean('sweepIntervalSecs', ['concurrency', 'maxJobs', 'sweepIntervalSeconds'])).toBe('sweepIntervalSeconds');
    expect(didYouMean('statedir', ['stateDir', 'roots'])).toBe('stateDir');
    expect(didYouMean('colour', ['stateDir', 'roots'])).toBeUndefined();
  });
});

describe('options as written', () => {
  it('shows a regular expression as its source, flags inline', () => {
    expect(asWritten({ exclude: /^tmp/, regex: /^run/i, hidden: false, list: [/a/] })).toEqual({
      exclude: '^tmp',
      regex: '(?i)^run',
      hidden: false,
      list: ['a'],
    });
  });
});
