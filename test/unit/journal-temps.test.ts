/** A record write killed between its temporary file and the rename leaves the file; the next run removes it. */
import { execa } from 'execa';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Journal } from '../../src/core/journal.js';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('Journal.removeOrphanedTemps', () => {
  it('removes the temporary files of writers that are gone, and nothing else', async () => {
    dir = await mkdtemp(join(tmpdir(), 'zdc-journal-'));
    const journal = new Journal(dir);
    const child = execa('true');
    const gone = child.pid!;
    await child;
    const jobs = join(dir, 'jobs');
    const names = {
      dead: `.743074325a813ae16513.json.${gone}.1765000000000.tmp`,
      deadRandom: `.743074325a813ae16513.json.${gone}.1765000000000.k3j9x1.tmp`,
      live: `.743074325a813ae16513.json.${process.pid}.1765000000000.ab12cd.tmp`,
      record: '743074325a813ae16513.json',
      other: `.notes.${gone}.1.tmp`,
    };
    await mkdir(jobs, { recursive: true });
    for (const name of Object.values(names)) await writeFile(join(jobs, name), '{}');
    await journal.removeOrphanedTemps();
    expect((await readdir(jobs)).sort()).toEqual([names.live, names.other, names.record].sort());
  });
});
