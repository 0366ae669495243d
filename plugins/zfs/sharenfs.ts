/**
 * sharenfs: a dataset exported by its ZFS property (`zfs set sharenfs=<value> <dataset>`), no
 * exports file written. The nfs-exports plugin's mode 'sharenfs' taps prepare, publish and sync
 * with these steps; zfs is called here only through the zfs plugin's own Zfs (its `command`
 * option), which it lends to the root's other builtins when it is applied (lendZfs).
 *
 * Which datasets exist, are live and where they are mounted comes from the survey and the job
 * record, never from zfs here: only the sharenfs property is set and read (in the sync, every
 * dataset's value in one `zfs list`, which the survey does not carry).
 */
import { oneLine, type Hooks, type Job, type Logger, type RootContext } from '../../src/index.js';
import type { Zfs } from './zfs.js';

/** Each root's Zfs, lent by the zfs plugin applied on that root's hooks. */
const lent = new WeakMap<Hooks, Zfs>();

export function lendZfs(hooks: Hooks, zfs: Zfs): void {
  lent.set(hooks, zfs);
}

export class Sharenfs {
  constructor(
    private readonly hooks: Hooks,
    private readonly value: string,
  ) {}

  /** The zfs plugin's Zfs for this root, looked up when a tap runs (plugins are applied in the config's order). */
  private get zfs(): Zfs {
    const zfs = lent.get(this.hooks);
    if (zfs === undefined)
      throw new Error(
        "nfs-exports' mode sharenfs sets a ZFS property with the zfs plugin's command, and this root does not load the zfs plugin",
      );
    return zfs;
  }

  /** The zfs command is there and knows the sharenfs property. */
  async prepare(root: RootContext): Promise<void> {
    await this.zfs.exec(['get', '-H', '-o', 'value', 'sharenfs', root.rootfs]);
  }

  async publish(job: Job): Promise<void> {
    // The dataset the filesystem plugin recorded (the provision phase sets it, recovery's
    // assessment too), never a name derived here.
    const dataset = job.record.filesystem;
    if (dataset === undefined)
      throw new Error(
        'no filesystem was recorded for this job (the provision phase records it), so there is no dataset to set sharenfs on',
      );
    await job.step('sharenfs', `set sharenfs=${this.value} on ${dataset}`, () => this.set(dataset, job.log));
  }

  /** Sets sharenfs on each of the root's live `datasets` that lacks it. */
  async sync(root: RootContext, datasets: Iterable<string>): Promise<void> {
    // Root-wide, one call: the sharenfs value of every dataset (not in the survey), so that
    // only those that lack it are set.
    const out = await this.zfs.exec(['list', '-H', '-r', '-t', 'filesystem', '-o', 'name,sharenfs', root.rootfs]);
    const current = new Map(
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t') as [string, string]),
    );
    for (const dataset of datasets) {
      if (current.get(dataset) === this.value) continue;
      if (root.dryRun) root.log.info(`would set sharenfs=${this.value} on ${dataset}`, { step: 'sync/sharenfs' });
      else await this.set(dataset, root.log);
    }
  }

  /** Sets sharenfs; a share that fails once the property is set is a warning (zfs-fuse shares by calling exportfs). */
  private async set(dataset: string, log: Logger): Promise<void> {
    try {
      await this.zfs.exec(['set', `sharenfs=${this.value}`, dataset]);
    } catch (error) {
      const now = (await this.zfs.exec(['get', '-H', '-o', 'value', 'sharenfs', dataset])).trim();
      if (now !== this.value) throw error;
      log.warn(`sharenfs=${this.value} is set on ${dataset}, but sharing it failed: ${oneLine(error)}`, { step: 'publish/sharenfs' });
    }
  }
}
