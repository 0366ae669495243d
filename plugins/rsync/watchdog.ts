/**
 * The copy's watchdog. rsync's sender opens each file of its list with a plain blocking open(2):
 * a file its owner swapped for a FIFO after the list was made blocks it for ever, and with it a
 * work slot (no rsync option opens without blocking). So the copy is watched for progress: the
 * I/O counters (rchar, wchar of /proc/<pid>/io) and CPU time (utime, stime of /proc/<pid>/stat)
 * of rsync and every process below it, and its output lines. A blocked open moves none of them;
 * a long file, a long scan of a large directory, a slow pool move at least one. When nothing
 * moved for the stall time, the caller stops the copy.
 */
import { readdir, readFile } from 'node:fs/promises';

/** The copy made no progress for `seconds` and was stopped. */
export class CopyStalledError extends Error {
  override readonly name = 'CopyStalledError';
  constructor(readonly seconds: number) {
    super(
      `the copy made no progress for ${seconds} s: rsync was stopped and the job rolled back (a file swapped for a FIFO or a device while it was copied? rsync waits for ever to open one)`,
    );
  }
}

/** Says, from successive samples of what a process does, whether it has stopped moving for `stallMs`. */
export class StallDetector {
  private last: string | undefined;
  private since: number;
  constructor(
    private readonly stallMs: number,
    now: number,
  ) {
    this.since = now;
  }

  /** Records a sample; true when the samples have not changed for the stall time. */
  observe(sample: string, now: number): boolean {
    if (sample !== this.last) {
      this.last = sample;
      this.since = now;
      return false;
    }
    return now - this.since >= this.stallMs;
  }

  /** Progress seen another way (an output line). */
  touch(now: number): void {
    this.since = now;
  }
}

/** The processes below `pid` (its children, theirs, ...), as far as they can still be read. */
async function descendants(pid: number): Promise<number[]> {
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    const tasks = await readdir(`/proc/${p}/task`).catch(() => [] as string[]);
    for (const t of tasks) {
      const text = await readFile(`/proc/${p}/task/${t}/children`, 'utf8').catch(() => '');
      for (const c of text.split(' ').filter(Boolean).map(Number)) {
        found.push(c);
        queue.push(c);
      }
    }
  }
  return found;
}

/** rchar + wchar + utime + stime of one process ('' when it is gone). */
async function countersOf(pid: number): Promise<string> {
  const [ioText, stat] = await Promise.all([
    readFile(`/proc/${pid}/io`, 'utf8').catch(() => ''),
    readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''),
  ]);
  const io = new Map(
    ioText.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1).trim()] as const),
  );
  const field = (name: string): string => io.get(name) ?? '';
  // After the command name (which may hold spaces and parentheses): state is field 3, utime 14, stime 15.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return `${field('rchar')}/${field('wchar')}/${rest[11] ?? ''}/${rest[12] ?? ''}`;
}

/** What `pid` and the processes below it have done so far: changes whenever any of them reads, writes or runs. */
export async function activityOf(pid: number): Promise<string> {
  const pids = [pid, ...(await descendants(pid))];
  const counters = await Promise.all(pids.map(countersOf));
  return pids.map((p, i) => `${p}=${counters[i]}`).join(' ');
}

export interface ProgressWatch {
  /** Progress seen another way (an output line). */
  touch(): void;
  stop(): void;
}

/**
 * Samples `pid`'s activity (activityOf) about four times per stall time (at most every second) and
 * calls `onStall` once when it has not moved for `stallMs`.
 */
export function watchProgress(pid: number, stallMs: number, onStall: () => void): ProgressWatch {
  const detector = new StallDetector(stallMs, Date.now());
  let stopped = false;
  let busy = false;
  const timer = setInterval(
    () => {
      if (busy || stopped) return;
      busy = true;
      void activityOf(pid)
        .then((sample) => {
          if (!stopped && detector.observe(sample, Date.now())) {
            stopped = true;
            clearInterval(timer);
            onStall();
          }
        })
        .finally(() => (busy = false));
    },
    Math.max(50, Math.min(1000, stallMs / 4)),
  );
  timer.unref();
  return {
    touch: () => detector.touch(Date.now()),
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
