/**
 * The journal: one small JSON file per job in flight under <stateDir>/jobs,
 * rewritten atomically and fsynced before every step that changes anything.
 * A job that ends well removes its file; whatever is left is work for recovery.
 */
import { mkdir, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DamagedStateError, oneLine } from './errors.js';
import { fsyncDir, isErrno, writeFileAtomic } from './fsutil.js';
import type { JobRecord } from './types.js';

export { jobId } from './job-id.js';

export class Journal {
  readonly dir: string;

  constructor(readonly stateDir: string) {
    this.dir = join(stateDir, 'jobs');
  }

  file(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  async write(record: JobRecord): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    record.updatedAt = new Date().toISOString();
    await writeFileAtomic(this.file(record.id), `${JSON.stringify(record, null, 1)}\n`, 0o600);
  }

  /**
   * The job's record, or undefined. A record that does not read (it cannot be torn: writes are
   * atomic) is damage: a DamagedStateError; with setAside (under the job's lock) the file is first
   * moved to <file>.damaged, so that the next run goes on without it, from what is on disk.
   */
  async read(id: string, options: { setAside?: boolean } = {}): Promise<JobRecord | undefined> {
    const file = this.file(id);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    }
    try {
      return parseRecord(text);
    } catch (error) {
      const detail = error instanceof SyntaxError ? 'not JSON' : oneLine(error);
      if (!options.setAside) throw new DamagedStateError(file, detail);
      await rename(file, `${file}.damaged`);
      await fsyncDir(this.dir);
      throw new DamagedStateError(
        file,
        detail,
        `the journal record ${file} is damaged (${detail}): moved to ${file}.damaged, nothing else changed; the next run for this root ('zfs-dynamic-creator recover') goes on from what is on disk`,
      );
    }
  }

  async remove(id: string): Promise<void> {
    try {
      await unlink(this.file(id));
      await fsyncDir(this.dir);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
    }
  }

  /**
   * Removes the temporary files of record writes whose process is gone (killed between the write
   * and the rename, see fsutil's writeTempFile): never a record, never a live writer's file.
   */
  async removeOrphanedTemps(): Promise<void> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    for (const name of names) {
      const pid = TEMP_NAME.exec(name)?.[1];
      if (pid !== undefined && !processAlive(Number(pid))) await unlink(join(this.dir, name)).catch(() => undefined);
    }
  }

  /** Every record in the journal (optionally of one root). Unreadable files are skipped. */
  async list(rootdir?: string): Promise<JobRecord[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return [];
      throw error;
    }
    const records: JobRecord[] = [];
    for (const name of names.filter((n) => n.endsWith('.json')).sort()) {
      try {
        const record = parseRecord(await readFile(join(this.dir, name), 'utf8'));
        // A record must sit in the file named after its id (a copied or renamed file is not ours).
        if (`${record.id}.json` !== name) continue;
        if (rootdir === undefined || record.rootdir === rootdir) records.push(record);
      } catch {
        // a torn file cannot exist (writes are atomic); anything else unreadable is not ours
      }
    }
    return records;
  }
}

/** `.<id>.json.<pid>.<ms>[.<random>].tmp`, fsutil's temporary name of a record being written. */
const TEMP_NAME = /^\.[0-9a-f]+\.json\.(\d+)\.\d+(?:\.[0-9a-z]+)?\.tmp$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return !isErrno(error, 'ESRCH');
  }
}

function parseRecord(text: string): JobRecord {
  const value = JSON.parse(text) as JobRecord | null;
  if (
    typeof value !== 'object' ||
    value === null ||
    value.version !== 1 ||
    typeof value.id !== 'string' ||
    typeof value.name !== 'string' ||
    typeof value.rootdir !== 'string' ||
    typeof value.rootfs !== 'string' ||
    typeof value.committed !== 'boolean' ||
    typeof value.status !== 'string' ||
    !Array.isArray(value.steps)
  ) {
    throw new Error('not a journal record');
  }
  return value;
}
