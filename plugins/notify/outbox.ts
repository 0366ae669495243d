/**
 * The outbox: notifications not yet delivered, one JSON file each in
 * <stateDir>/notify-outbox/<root's hash>/, written atomically before the first try and removed once
 * delivered, so that a receiver that is down, or a process that ends, loses none. The sweeps
 * (sync) send them again; one older than the maximum age is given up.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { isErrno, writeFileAtomic } from '../../src/index.js';
import type { Destination, Notification } from './send.js';

export interface OutboxEntry {
  readonly version: 1;
  readonly rootdir: string;
  readonly to: Destination;
  /** When it was first to be sent (ISO 8601, UTC): its age counts from there. */
  readonly created: string;
  /** Not sent by a sweep before then (the first tries may still be under way). */
  readonly retryAt: string;
  readonly notification: Notification;
}

const isEntry = (value: unknown, rootdir: string): value is OutboxEntry => {
  const v = value as Partial<OutboxEntry> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    v.version === 1 &&
    v.rootdir === rootdir &&
    typeof v.created === 'string' &&
    typeof v.retryAt === 'string' &&
    typeof v.to === 'object' &&
    typeof v.notification?.body === 'object'
  );
};

export class Outbox {
  readonly dir: string;
  /** The lock a sweep takes (one sender of this root's outbox at a time). */
  readonly lockId: string;

  constructor(
    stateDir: string,
    private readonly rootdir: string,
  ) {
    const key = createHash('sha256').update(rootdir).digest('hex').slice(0, 16);
    this.dir = join(stateDir, 'notify-outbox', key);
    this.lockId = `notify-outbox-${key}`;
  }

  /** Keeps `entry`; returns its file. */
  async put(entry: OutboxEntry): Promise<string> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    // The time first: the files sort in the order they were made.
    const file = join(this.dir, `${entry.created.replace(/[^0-9]/g, '')}-${randomBytes(4).toString('hex')}.json`);
    await writeFileAtomic(file, `${JSON.stringify(entry)}\n`, 0o600);
    return file;
  }

  /** Writes `entry` again in place of `file`. */
  async update(file: string, entry: OutboxEntry): Promise<void> {
    await writeFileAtomic(file, `${JSON.stringify(entry)}\n`, 0o600);
  }

  async remove(file: string): Promise<void> {
    await unlink(file).catch((error: unknown) => {
      if (!isErrno(error, 'ENOENT')) throw error;
    });
  }

  /** Whether nothing is kept (one readdir: what a sweep costs when every receiver answers). */
  async isEmpty(): Promise<boolean> {
    return !(await readdir(this.dir).catch(() => [] as string[])).some((n) => n.endsWith('.json'));
  }

  /** The entries kept, oldest first; a file that does not parse is named to `bad` and removed. */
  async list(bad: (file: string) => void): Promise<{ file: string; entry: OutboxEntry }[]> {
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json')).sort();
    const found: { file: string; entry: OutboxEntry }[] = [];
    for (const name of names) {
      const file = join(this.dir, name);
      const text = await readFile(file, 'utf8').catch(() => undefined);
      if (text === undefined) continue; // sent and removed meanwhile
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        value = undefined;
      }
      if (isEntry(value, this.rootdir)) found.push({ file, entry: value });
      else {
        bad(file);
        await this.remove(file);
      }
    }
    return found;
  }
}
