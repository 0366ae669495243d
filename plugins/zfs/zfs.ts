/**
 * The zfs commands this plugin needs, in the subset zfs-fuse and OpenZFS share (where OpenZFS does
 * more in one command, as setAll does, with a fallback; where zfs-fuse must mount one filesystem at
 * a time, see ZFS_FUSE_MOUNT_LOCK).
 */
import { CommandError, RefusedError, TransientError, Limiter, acquireLock, retry, run, type Lock, type Logger } from '../../src/index.js';
import { detectZfs, type ZfsImplementation } from './implementation.js';

/** User properties that mark a dataset's part in a conversion. */
export const PROP_STATE = 'org.zfs-dynamic-creator:state';
export const PROP_ASIDE = 'org.zfs-dynamic-creator:aside';
/** The original directory's identity (dev:ino), recorded when the dataset is made. */
export const PROP_ORIGIN = 'org.zfs-dynamic-creator:origin';
/** The directory's own name, on a dataset whose name was mapped from it (names.ts). */
export const PROP_NAME = 'org.zfs-dynamic-creator:name';

/**
 * The conversion's history, set on the dataset when it is marked live (so it outlives the journal
 * and reinstalls; `zfs-dynamic-creator history` lists them):
 *   converted  when the dataset was marked live (ISO 8601, UTC)
 *   version    the zfs-dynamic-creator version that converted it
 *   seconds    wall-clock seconds from the job's start (the directory seen) to live: quiet period,
 *              copy, swap and grace period included, and any interruption, or a cleanup left to a
 *              later run (handle --no-wait), before it was finished
 *   files      regular files copied from the original (the copy's verified baseline, told by the
 *              copy plugin through the job's record; absent when it told nothing)
 *   bytes      their apparent size in bytes (the sum of file sizes, not the space used on disk:
 *              see `zfs get used,compressratio`)
 */
export const PROP_HISTORY = {
  converted: 'org.zfs-dynamic-creator:converted',
  version: 'org.zfs-dynamic-creator:version',
  seconds: 'org.zfs-dynamic-creator:seconds',
  files: 'org.zfs-dynamic-creator:files',
  bytes: 'org.zfs-dynamic-creator:bytes',
} as const;

/**
 * What became of a converted run after its conversion (plugins/zfs/completion.ts; `history` shows them):
 *   completed          when the run said it was complete or aborted (the run's completedAt)
 *   completedSnapshot  the snapshot taken at completion (the part after "@")
 *   readonlySince      when readonly=on was set, readonlyAfterSeconds after the completion
 */
export const PROP_COMPLETION = {
  completed: 'org.zfs-dynamic-creator:completed',
  completedSnapshot: 'org.zfs-dynamic-creator:completed-snapshot',
  readonlySince: 'org.zfs-dynamic-creator:readonly-since',
} as const;

export type DatasetState = 'staging' | 'swapping' | 'swapped' | 'live';

export interface DatasetInfo {
  readonly name: string;
  readonly mountpoint: string;
  readonly mounted: boolean;
  /** Our state property, when set. */
  readonly state: DatasetState | undefined;
  readonly aside: string | undefined;
  readonly origin: { dev: number; ino: number } | undefined;
  /** PROP_NAME as set (encoded: names.ts decodeName), when set. */
  readonly named: string | undefined;
}

const UNITS = 'KMGTPEZ';

/** A ZFS size ("2T", "1.5G", "512M", "1048576") in bytes; undefined for "none" and the like. */
export function parseSize(value: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGTPEZ]?)(?:i?B)?$/i.exec(value.trim());
  if (!m) return undefined;
  const power = m[2] ? UNITS.indexOf(m[2].toUpperCase()) + 1 : 0;
  return Math.floor(Number(m[1]) * 1024 ** power);
}

/** Characters ZFS allows in a dataset name component. */
const VALID = /^[A-Za-z0-9_.: -]+$/;
/** ZFS_MAX_DATASET_NAME_LEN is 256 with the terminating NUL. */
export const MAX_DATASET_NAME = 255;

/** Why `name` cannot be a dataset under `rootfs`, or undefined when it can. */
export function datasetNameProblem(rootfs: string, name: string): string | undefined {
  if (!VALID.test(name)) {
    const bad = [...name].find((c) => !/[A-Za-z0-9_.: -]/.test(c)) ?? '?';
    return `it holds ${JSON.stringify(bad)}, and a ZFS dataset name allows only letters, digits, space and - _ . :`;
  }
  const full = `${rootfs}/${name}`;
  if (Buffer.byteLength(full) > MAX_DATASET_NAME) {
    return `the dataset name ${rootfs}/… would be ${Buffer.byteLength(full)} bytes long, and ZFS allows ${MAX_DATASET_NAME}`;
  }
  return undefined;
}

/** Characters this tool allows in a snapshot name (ZFS's, without the space older ZFS refuses). */
const VALID_SNAPSHOT = /^[A-Za-z0-9_.:-]+$/;

/** Why `name` cannot be the part after "@" of a ZFS snapshot name, or undefined when it can. */
export function snapshotNameProblem(name: string): string | undefined {
  if (name === '') return 'a snapshot name (the part after "@") must not be empty';
  if (!VALID_SNAPSHOT.test(name)) {
    const bad = [...name].find((c) => !/[A-Za-z0-9_.:-]/.test(c)) ?? '?';
    return `${JSON.stringify(name)} is not a ZFS snapshot name: it holds ${JSON.stringify(bad)}, and a snapshot name allows only letters, digits and - _ . :`;
  }
  if (Buffer.byteLength(name) >= MAX_DATASET_NAME)
    return `${JSON.stringify(name)} is too long for a ZFS snapshot name (with the dataset's name, ZFS allows ${MAX_DATASET_NAME} bytes)`;
  return undefined;
}

function isBusy(error: unknown): boolean {
  return error instanceof CommandError && /busy/i.test(error.stderr);
}

/**
 * "cannot open 'pool/x': I/O error" from a lookup. zfs-fuse answered a `zfs list` of a child it was
 * not creating with it once during a burst of 40 creates (the next listing was fine); on kernel
 * OpenZFS it means trouble with the pool, which a few more tries will not hide.
 */
function isIoError(error: unknown): boolean {
  return error instanceof CommandError && /I\/O error/i.test(error.stderr);
}

/** Tries of a read-only lookup that zfs answered with an I/O error, the first included. */
const LOOKUP_ATTEMPTS = 4;

/**
 * zfs-fuse mounts one filesystem at a time, or it can stop answering every file request for good.
 * For each mount, its daemon writes two records (the filesystem's channel, then its mountpoint) to
 * one pipe that a listener thread reads while it holds the mutex all its request threads share;
 * two mounts at once can interleave those writes, the listener then reads a length out of a path
 * and waits in read(2) for that many bytes (1,635,021,548 in the case we caught with gdb) with the
 * mutex held. Kernel OpenZFS mounts in the kernel and needs none of this.
 */
export const ZFS_FUSE_MOUNT_LOCK = 'zfs-fuse-mount';
/** How long a command that mounts waits for another process's turn (each takes well under a second). */
const MOUNT_TURN_WAIT_MS = 600_000;
/**
 * Within a process (the daemon's jobs), turns are handed on in order at once; the lock, which
 * waits by polling, is then only contended by other processes (incron's, reconcile).
 */
const mountTurns = new Map<string, Limiter>();

/** Whether these `zfs` arguments mount a filesystem: a create, a mount, or a change of where or whether one mounts. */
export function mounts(args: readonly string[]): boolean {
  const [verb, ...rest] = args;
  const mountProperty = (p: string | undefined): boolean => p === 'mountpoint' || p === 'canmount';
  if (verb === 'create' || verb === 'mount') return true;
  if (verb === 'set') return rest.slice(0, -1).some((a) => mountProperty(a.split('=')[0]));
  if (verb === 'inherit') return rest.slice(0, -1).some(mountProperty);
  return false;
}

export class Zfs {
  /**
   * @param stateDir where zfs-fuse's mount turn is taken (ZFS_FUSE_MOUNT_LOCK, among the jobs'
   *   locks, shared by every process of this state directory); without it, none is taken.
   */
  constructor(
    private readonly command: string,
    private readonly log: Logger,
    private readonly busyAttempts: number,
    private readonly busyFirstDelayMs: number,
    private readonly stateDir?: string,
  ) {}

  async exec(args: readonly string[]): Promise<string> {
    const command = async (): Promise<string> => (await run(this.command, args)).stdout;
    if (this.stateDir === undefined || !mounts(args) || (await this.kind()) !== 'zfs-fuse') return command();
    return this.inMountTurn(this.stateDir, args, command);
  }

  /** zfs-fuse: runs `command` (which mounts) in this state directory's turn (ZFS_FUSE_MOUNT_LOCK). */
  private async inMountTurn<T>(stateDir: string, args: readonly string[], command: () => Promise<T>): Promise<T> {
    let turns = mountTurns.get(stateDir);
    if (!turns) mountTurns.set(stateDir, (turns = new Limiter(1)));
    return turns.run(async () => {
      const lock: Lock = await acquireLock(stateDir, ZFS_FUSE_MOUNT_LOCK, {
        waitMs: MOUNT_TURN_WAIT_MS,
        busyMessage: `zfs ${args[0]} ${args.at(-1)}: zfs-fuse mounts one filesystem at a time, and another process kept its turn for ${MOUNT_TURN_WAIT_MS / 60_000} minutes`,
      });
      try {
        return await command();
      } finally {
        await lock.release();
      }
    });
  }

  private implementation: Promise<ZfsImplementation['kind']> | undefined;

  /** Which ZFS this is (once per process; 'unknown' when `zfs version` fails otherwise). */
  private kind(): Promise<ZfsImplementation['kind']> {
    this.implementation ??= detectZfs(this.command).then(
      (zfs) => zfs.kind,
      () => 'unknown' as const,
    );
    return this.implementation;
  }

  /** Runs a command that zfs may answer "dataset is busy" to, retrying with backoff. */
  async execRetryingBusy(args: readonly string[], signal?: AbortSignal): Promise<string> {
    try {
      return await retry(() => this.exec(args), {
        attempts: this.busyAttempts,
        firstDelayMs: this.busyFirstDelayMs,
        transient: isBusy,
        signal,
        onRetry: (_e, attempt, delay) =>
          this.log.info(
            `zfs ${args[0]} ${args.at(-1)}: dataset is busy (a process may hold files in it); trying again in ${delay} ms (try ${attempt + 1} of ${this.busyAttempts})`,
          ),
      });
    } catch (error) {
      if (isBusy(error)) {
        throw new TransientError(
          `zfs ${args[0]} ${args.at(-1)}: dataset is still busy after ${this.busyAttempts} tries (a process holds files in it: see fuser -vm)`,
        );
      }
      throw error;
    }
  }

  private static parse(line: string): DatasetInfo {
    const [name = '', mountpoint = '', mounted = '', state = '-', aside = '-', origin = '-', named = '-'] = line.split('\t');
    const known = ['staging', 'swapping', 'swapped', 'live'];
    const id = /^(\d+):(\d+)$/.exec(origin);
    return {
      name,
      mountpoint,
      mounted: mounted === 'yes',
      state: known.includes(state) ? (state as DatasetState) : undefined,
      aside: aside === '-' || aside === '' ? undefined : aside,
      origin: id ? { dev: Number(id[1]), ino: Number(id[2]) } : undefined,
      named: named === '-' || named === '' ? undefined : named,
    };
  }

  private static readonly COLUMNS = `name,mountpoint,mounted,${PROP_STATE},${PROP_ASIDE},${PROP_ORIGIN},${PROP_NAME}`;
  /** The column after COLUMNS in a listing that adds one. */
  private static readonly EXTRA = Zfs.COLUMNS.split(',').length;

  /** Bytes the dataset uses (`zfs get -Hp`, which zfs-fuse and OpenZFS both have). */
  async usedBytes(name: string): Promise<number> {
    const out = await this.exec(['get', '-H', '-p', '-o', 'value', 'used', name]);
    const n = Number(out.trim());
    if (!Number.isFinite(n)) throw new Error(`zfs get used ${name}: unexpected answer ${JSON.stringify(out.trim())}`);
    return n;
  }

  /** One dataset, or undefined when it does not exist. */
  async get(name: string): Promise<DatasetInfo | undefined> {
    try {
      const args = ['list', '-H', '-t', 'filesystem', '-o', Zfs.COLUMNS, name];
      // Read-only, so tried again when zfs answers with an I/O error (see isIoError).
      const out = await retry(() => this.exec(args), {
        attempts: LOOKUP_ATTEMPTS,
        firstDelayMs: 250,
        transient: isIoError,
        onRetry: (error, attempt, delay) =>
          this.log.info(
            `zfs list ${name}: ${(error as CommandError).stderr.trim()}; trying again in ${delay} ms (try ${attempt + 1} of ${LOOKUP_ATTEMPTS})`,
          ),
      });
      return Zfs.parse(out.split('\n')[0] ?? '');
    } catch (error) {
      if (error instanceof CommandError && /does not exist/.test(error.stderr)) return undefined;
      throw error;
    }
  }

  /** Lookups of direct children waiting for the next listing, by parent. */
  private readonly lookups = new Map<
    string,
    { waiting: { name: string; answer: (info: Promise<DatasetInfo | undefined>) => void }[]; busy: boolean }
  >();

  /**
   * The direct child `name` of `parent`, as get(`${parent}/${name}`) answers. Lookups asked for
   * while one is under way are answered together by the next `zfs list -d 1` of the parent,
   * started after all of them were asked (so each answer is as fresh as its own get would be):
   * a burst of 40 new directories costs two zfs commands, not 40 queued behind each other. A
   * lookup alone is a plain get; a child that is not a filesystem, and any error of the listing,
   * are answered by get, as before.
   */
  child(parent: string, name: string): Promise<DatasetInfo | undefined> {
    let entry = this.lookups.get(parent);
    if (!entry) this.lookups.set(parent, (entry = { waiting: [], busy: false }));
    const answered = new Promise<Promise<DatasetInfo | undefined>>((answer) => entry.waiting.push({ name, answer }));
    if (!entry.busy) void this.nextLookups(parent);
    return answered.then((info) => info);
  }

  private async nextLookups(parent: string): Promise<void> {
    const entry = this.lookups.get(parent);
    if (!entry || entry.busy) return;
    const batch = entry.waiting.splice(0);
    if (batch.length === 0) {
      this.lookups.delete(parent);
      return;
    }
    entry.busy = true;
    try {
      if (batch.length === 1) {
        const only = this.get(`${parent}/${batch[0]!.name}`);
        only.catch(() => undefined);
        batch[0]!.answer(only);
        await only.catch(() => undefined);
        return;
      }
      let listed: Map<string, { info: DatasetInfo; type: string }> | undefined;
      try {
        const out = await this.exec(['list', '-H', '-r', '-d', '1', '-t', 'filesystem,volume', '-o', `${Zfs.COLUMNS},type`, parent]);
        listed = new Map(
          out
            .split('\n')
            .filter((l) => l.length > 0)
            .map((l) => [l.split('\t')[0] ?? '', { info: Zfs.parse(l), type: l.split('\t')[Zfs.EXTRA] ?? '' }] as const),
        );
      } catch {
        listed = undefined; // each is asked for on its own below: the same answer, or error, as before
      }
      for (const { name, answer } of batch) {
        const full = `${parent}/${name}`;
        const found = listed?.get(full);
        if (listed && (!found || found.type === 'filesystem')) answer(Promise.resolve(found?.info));
        else {
          const own = this.get(full);
          own.catch(() => undefined);
          answer(own);
        }
      }
    } finally {
      entry.busy = false;
      void this.nextLookups(parent);
    }
  }

  /** rootfs and its children (down to `depth` levels: a root's layout), in one call. */
  async children(rootfs: string, depth = 1): Promise<{ root: DatasetInfo; children: DatasetInfo[] }> {
    let out: string;
    try {
      out = await this.exec(['list', '-H', '-r', '-d', String(depth), '-t', 'filesystem', '-o', Zfs.COLUMNS, rootfs]);
    } catch (error) {
      if (error instanceof CommandError && /does not exist/.test(error.stderr)) {
        throw new RefusedError(`ZFS filesystem ${rootfs} does not exist`);
      }
      throw error;
    }
    const all = out
      .split('\n')
      .filter((l) => l.length > 0)
      .map(Zfs.parse);
    const root = all.find((d) => d.name === rootfs);
    if (!root) throw new RefusedError(`ZFS filesystem ${rootfs} does not exist`);
    return { root, children: all.filter((d) => d.name !== rootfs) };
  }

  /** Whether this zfs knows a property (OpenZFS has `overlay`, zfs-fuse does not). */
  async knowsProperty(dataset: string, property: string): Promise<boolean> {
    try {
      await this.exec(['get', '-H', '-o', 'value', property, dataset]);
      return true;
    } catch (error) {
      if (error instanceof CommandError && /bad property|invalid property/i.test(error.stderr)) return false;
      throw error;
    }
  }

  async create(name: string, properties: Readonly<Record<string, string>>): Promise<void> {
    const args = ['create'];
    for (const [key, value] of Object.entries(properties)) args.push('-o', `${key}=${value}`);
    args.push(name);
    await this.exec(args);
  }

  /** Whether the snapshot `name` (dataset@snap) exists. */
  async snapshotExists(name: string): Promise<boolean> {
    try {
      await this.exec(['list', '-H', '-t', 'snapshot', '-o', 'name', name]);
      return true;
    } catch (error) {
      if (error instanceof CommandError && /does not exist/.test(error.stderr)) return false;
      throw error;
    }
  }

  /** Makes the snapshot `name` (dataset@snap); one made meanwhile by another run counts as made. */
  async snapshot(name: string): Promise<void> {
    try {
      await this.execRetryingBusy(['snapshot', name]);
    } catch (error) {
      if (error instanceof CommandError && /exists/.test(error.stderr) && (await this.snapshotExists(name))) return;
      throw error;
    }
  }

  async set(name: string, property: string, value: string): Promise<void> {
    await this.execRetryingBusy(['set', `${property}=${value}`, name]);
  }

  /**
   * Sets several properties. OpenZFS (0.7 and later) takes them in one `zfs set`: one change,
   * made whole or not at all, and one transaction group to wait for instead of one per property
   * (on a busy pool each can take seconds); `zfs version`, which OpenZFS has from 0.8 on, tells it.
   * Elsewhere (zfs-fuse, or a zfs that cannot say what it is) one `zfs set` each, in the order
   * given: put the property that marks a step done last.
   */
  async setAll(name: string, properties: Readonly<Record<string, string>>): Promise<void> {
    const entries = Object.entries(properties);
    if (entries.length > 1 && (await this.kind()) === 'openzfs') {
      await this.execRetryingBusy(['set', ...entries.map(([key, value]) => `${key}=${value}`), name]);
      return;
    }
    for (const [key, value] of entries) await this.set(name, key, value);
  }

  async inherit(name: string, property: string): Promise<void> {
    await this.execRetryingBusy(['inherit', property, name]);
  }

  async mount(name: string): Promise<void> {
    await this.execRetryingBusy(['mount', name]);
  }

  async destroy(name: string): Promise<void> {
    await this.execRetryingBusy(['destroy', name]);
  }
}
