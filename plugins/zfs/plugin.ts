/** The zfs plugin's steps: one method per tap (index.ts says what each does and wires them). */
import { lstat, realpath, rename, stat } from 'node:fs/promises';
import {
  originalPlace,
  AdvisedError,
  RefusedError,
  RootGoneError,
  assertLevels,
  assertSameDirectory,
  ensureHoldingDir,
  isHelperName,
  jobPaths,
  rootLevelHelperPath,
  ownVersion,
  quoteName,
  type Assessment,
  type Skip,
  type Job,
  type Logger,
  type RootContext,
  type Survey,
} from '../../src/index.js';
import { Completion } from './completion.js';
import { emptyOrAbsent, exists, holdsReservedZfsName, identityOf, mountedAt, removeEmptyDir, sameIdentity } from './files.js';
import { checkMountpoint, makeMountpoint, removeOwnMountpoint, type MountpointProblem } from './mountpoint.js';
import { LIMITS, type Options } from './options.js';
import { datasetFor, directoryOf, encodeName, parentOf } from './names.js';
import { checkRoom } from './space.js';
import { MAX_DATASET_NAME, PROP_ASIDE, PROP_HISTORY, PROP_NAME, PROP_ORIGIN, PROP_STATE, Zfs, parseSize, type DatasetInfo } from './zfs.js';

/** The history properties of a conversion ending now (see PROP_HISTORY). */
function historyOf(job: Job): Record<string, string> {
  const started = Date.parse(job.record.startedAt);
  const copied = job.record.copied;
  return {
    [PROP_HISTORY.converted]: new Date().toISOString(),
    [PROP_HISTORY.version]: ownVersion(),
    ...(Number.isFinite(started) ? { [PROP_HISTORY.seconds]: ((Date.now() - started) / 1000).toFixed(1) } : {}),
    ...(copied !== undefined ? { [PROP_HISTORY.files]: String(copied.files), [PROP_HISTORY.bytes]: String(copied.bytes) } : {}),
  };
}

function isCommitted(ds: DatasetInfo | undefined): boolean {
  return ds?.state === 'swapped' || ds?.state === 'live';
}

export class ZfsPlugin {
  readonly zfs: Zfs;
  /** What follows a run's completion: its snapshot, readonly after a delay (completion.ts). */
  readonly completion: Completion;
  /** Properties set at creation: all but the limits. */
  private readonly createProperties: Record<string, string>;
  /** quota, refquota, reservation, refreservation as configured: set at the commit. */
  private readonly limits: [string, string][];
  /**
   * quota and refquota bound the staging copy from its creation (the room check proved it fits; a
   * tree grown during the copy cannot take more): set again, as the rest, at the commit.
   */
  private readonly bounds: Record<string, string>;
  private noOverlay: Promise<Record<string, string>> | undefined;

  constructor(
    private readonly opts: Options,
    log: Logger,
    stateDir: string,
  ) {
    this.zfs = new Zfs(opts.command, log, opts.busyAttempts, opts.busyFirstDelayMs, stateDir);
    this.completion = new Completion(opts, this.zfs, log);
    this.createProperties = Object.fromEntries(Object.entries(opts.properties).filter(([k]) => !LIMITS.has(k)));
    this.limits = Object.entries(opts.properties).filter(([k]) => LIMITS.has(k));
    this.bounds = Object.fromEntries(this.limits.filter(([k]) => k === 'quota' || k === 'refquota'));
  }

  /**
   * OpenZFS on Linux may mount over a non-empty directory (overlay=on), which would hide whatever
   * was created at the original path in the instant the dataset is mounted there. With
   * overlay=off the mount fails instead, and the job keeps both. zfs-fuse never overlays.
   */
  private overlayOff(rootfs: string): Promise<Record<string, string>> {
    return (this.noOverlay ??= this.zfs
      .knowsProperty(rootfs, 'overlay')
      .then((known): Record<string, string> => (known ? { overlay: 'off' } : {})));
  }

  /**
   * The job's dataset: `<rootfs>/<name>`; for a name ZFS forbids, the child of rootfs recorded
   * with that name (PROP_NAME) when there is one, else the mapped name (names.ts), whatever the
   * option mapNames says now (it decides only which directories start a conversion). A record
   * that names another dataset is not followed.
   */
  private async datasetOf(job: Job): Promise<string> {
    const { rootfs } = job.root;
    const target = datasetFor(rootfs, job.name, true);
    if ('problem' in target) throw new RefusedError(`${quoteName(job.name)} cannot become a ZFS dataset: ${target.problem}; left alone`);
    const recorded = job.record.filesystem;
    let dataset = target.dataset;
    if (target.mapped && recorded !== dataset) {
      const parent = parentOf(dataset);
      // Below a root's layout, the parent is made with the first run under it.
      const children = parent === rootfs || (await this.zfs.get(parent)) ? (await this.zfs.children(parent)).children : [];
      dataset = children.find((ds) => ds.named !== undefined && directoryOf(rootfs, ds) === job.name)?.name ?? dataset;
    }
    if (recorded !== undefined && recorded !== dataset) {
      throw new RefusedError(`the job's record names the dataset ${quoteName(recorded)}, not ${quoteName(dataset)}; left alone`);
    }
    return dataset;
  }

  private isMapped(job: Job, filesystem: string): boolean {
    return filesystem !== `${job.root.rootfs}/${job.name}`;
  }

  /**
   * A run below the root (a root's layout): every directory between the root and it checked
   * (src/core/levels.ts) right before a move or a mount through them; nothing for a direct child.
   */
  private async levels(job: Job): Promise<void> {
    const layout = job.root.layout;
    if (layout !== undefined && layout.depth > 1)
      await assertLevels(job.root.rootdir, job.name, layout.depth, new Set(layout.trustedOwners));
  }

  /**
   * The datasets of a run's levels (rootfs/exp, rootfs/exp/sample), made with canmount=off when
   * missing: they hold no data and mount nothing (their directories stay plain directories of
   * the root), and give the run's dataset its mountpoint by inheritance. One that is mounted
   * would put the run on another filesystem than the root's: refused.
   */
  private async levelDatasets(job: Job, filesystem: string): Promise<void> {
    const { rootfs } = job.root;
    const levels: string[] = [];
    for (let p = parentOf(filesystem); p !== rootfs && p.startsWith(`${rootfs}/`); p = parentOf(p)) levels.unshift(p);
    for (const level of levels) {
      let ds = await this.zfs.get(level);
      if (!ds) {
        await job.step('create-level', `create ${level} (canmount=off: a plain directory stays at its path)`, () =>
          this.zfs.create(level, { canmount: 'off' }).catch(async (error: unknown) => {
            if (!(await this.zfs.get(level))) throw error; // made meanwhile by a run beside this one
          }),
        );
        ds = await this.zfs.get(level);
      }
      const at = `${job.root.rootdir}/${level.slice(rootfs.length + 1)}`;
      if (ds !== undefined && ds.mountpoint !== at) {
        throw new RefusedError(
          `${level} has the mountpoint ${quoteName(ds.mountpoint)}, not ${quoteName(at)}: the run's dataset would not mount at its path; left as it is`,
          {
            permanent: true,
          },
        );
      }
      if (ds?.mounted) {
        throw new RefusedError(
          `${level} is a mounted dataset: the runs below ${quoteName(ds.mountpoint)} would not be on the root's filesystem; left as it is`,
          {
            permanent: true,
          },
        );
      }
    }
  }

  /** Refuses a dataset that another directory's name was mapped to (names.ts), or that has that directory's name. */
  private assertOwnDataset(job: Job, ds: DatasetInfo): void {
    const owner = directoryOf(job.root.rootfs, ds);
    if (owner !== job.name) {
      throw new RefusedError(
        `${quoteName(job.name)} cannot become ${ds.name}: that dataset belongs to the directory ${quoteName(owner)}; left as it is`,
        { permanent: true },
      );
    }
  }

  /**
   * Where the original is kept: the holding directory; the root-level helper names of older
   * versions only for a job whose own record says it used them (anyone can make such a name in
   * a world-writable root, and it must not stall a job).
   */
  private legacy(job: Job, kind: 'orig' | 'staging'): string[] {
    const path = rootLevelHelperPath(job.root.rootdir, job.name, kind);
    return (kind === 'orig' ? job.record.aside : job.record.staging) === path ? [path] : [];
  }

  private async asideOf(job: Job): Promise<string | undefined> {
    const place = await originalPlace(job, { anyDirectory: true });
    return place?.at === 'aside' ? place.path : undefined;
  }

  private stagingDirs(job: Job): string[] {
    return [jobPaths(job.root.rootdir, job.name).staging, ...this.legacy(job, 'staging')];
  }

  /** The root's dataset exists, is mounted, and is mounted at the configured rootdir. */
  async prepare(root: RootContext): Promise<void> {
    const info = await this.zfs.get(root.rootfs);
    // Gone (pool exported or destroyed, not mounted): its jobs wait, the other roots go on.
    if (!info) throw new RootGoneError(`ZFS filesystem ${root.rootfs} does not exist`);
    if (!info.mounted) throw new RootGoneError(`ZFS filesystem ${root.rootfs} is not mounted`);
    const [a, b] = await Promise.all([stat(root.rootdir).catch(() => undefined), stat(info.mountpoint).catch(() => undefined)]);
    const [ra, rb] = await Promise.all([
      realpath(root.rootdir).catch(() => root.rootdir),
      realpath(info.mountpoint).catch(() => info.mountpoint),
    ]);
    if (!a || !b || a.dev !== b.dev || a.ino !== b.ino || ra !== rb) {
      throw new RefusedError(`${root.rootdir} is not the mountpoint of ${root.rootfs} (it is mounted at ${info.mountpoint})`);
    }
  }

  /** rootfs and its children in one `zfs list`. */
  async survey(survey: Survey, root: RootContext): Promise<Survey> {
    const depth = root.layout?.depth ?? 1;
    const { children } = await this.zfs.children(root.rootfs, depth);
    const prefix = `${root.rootdir}/`;
    for (const ds of children) {
      // A mapped dataset by its recorded name, never by a name derived again (names.ts).
      const name = directoryOf(root.rootfs, ds);
      survey.filesystems.set(name, { mountpoint: ds.mountpoint, mounted: ds.mounted, filesystem: ds.name });
      if (ds.state !== undefined && ds.state !== 'live') survey.leftovers.add(name);
      // A directory that is some dataset's mountpoint is not a plain directory.
      if (ds.mounted && ds.mountpoint.startsWith(prefix)) {
        const at = ds.mountpoint.slice(prefix.length);
        if (at.split('/').length === depth && at !== name) survey.ignored.add(at);
      }
    }
    return survey;
  }

  async filter(job: Job): Promise<Skip | undefined> {
    if (isHelperName(job.name)) return { skip: 'a helper directory of zfs-dynamic-creator itself' };
    const target = datasetFor(job.root.rootfs, job.name, this.opts.mapNames);
    if ('problem' in target) {
      const hint = target.mappable ? "; the zfs plugin's option mapNames: true would map it to a name ZFS allows" : '';
      throw new RefusedError(`${quoteName(job.name)} cannot become a ZFS dataset: ${target.problem}${hint}; left as it is`, {
        permanent: true,
      });
    }
    const filesystem = await this.datasetOf(job); // refuses a record that names another dataset
    const snapshot = this.opts.snapshot !== undefined ? `${filesystem}@${this.opts.snapshot}` : undefined;
    if (snapshot !== undefined && Buffer.byteLength(snapshot) > MAX_DATASET_NAME) {
      throw new RefusedError(
        `${quoteName(job.name)} cannot become a ZFS dataset with the snapshot the zfs plugin's option snapshot asks for: ${quoteName(snapshot)} would be ${Buffer.byteLength(snapshot)} bytes long, and ZFS allows ${MAX_DATASET_NAME}; left as it is`,
        { permanent: true },
      );
    }
    const [dir, parent] = await Promise.all([lstat(job.path), lstat(job.root.rootdir)]);
    // The dataset, looked up together with those of the other directories of a burst.
    const existing = await this.zfs.child(parentOf(filesystem), filesystem.slice(parentOf(filesystem).length + 1));
    if (existing) {
      this.assertOwnDataset(job, existing);
      if (existing.state !== undefined && existing.state !== 'live') {
        throw new RefusedError(`${existing.name} is left over from an interrupted conversion; run 'zfs-dynamic-creator recover'`);
      }
      return { skip: `already a filesystem (${existing.name})` };
    }
    if (dir.dev !== parent.dev) return { skip: 'already a mountpoint of another filesystem' };
    await this.levels(job).catch((error: unknown) => {
      throw new RefusedError((error as Error).message, { permanent: true });
    });
    if (await holdsReservedZfsName(job)) {
      throw new RefusedError(
        `${quoteName(job.name)} holds an entry named .zfs at its top, the name ZFS keeps for a dataset's snapshot directory: it could not be copied into the dataset; rename it, and the next run converts the directory; left as it is`,
      );
    }
    return undefined;
  }

  /** zfs create <rootfs>/<name> at the staging mountpoint, without the limits that can make a write fail. */
  async provision(job: Job): Promise<void> {
    const filesystem = await this.datasetOf(job);
    const { staging } = jobPaths(job.root.rootdir, job.name);
    await job.setJournalled({ filesystem, staging });
    const existing = await this.zfs.get(filesystem);
    if (existing) this.assertOwnDataset(job, existing);
    if (existing && existing.state !== 'staging') {
      throw new RefusedError(`${filesystem} already exists and was not made by this job`);
    }
    if (!existing) {
      // A copy that would not fit the pool or the quota is refused before anything is made.
      await checkRoom(this.zfs, job, this.opts.properties);
      if (!job.dryRun) await this.levelDatasets(job, filesystem);
      // The holding directory checked again (root's, 0700, in a root nobody else can rename
      // in) right before zfs mounts the staging dataset inside it.
      await ensureHoldingDir(job.root.rootdir, !job.dryRun);
      // Inside the root-only holding directory: only an earlier run of this job can have left it.
      if (await exists(staging)) await removeEmptyDir(staging);
      const identity = job.record.identity;
      const origin: Record<string, string> = identity ? { [PROP_ORIGIN]: `${identity.dev}:${identity.ino}` } : {};
      if (this.isMapped(job, filesystem)) origin[PROP_NAME] = encodeName(job.name);
      await job.step('create', `create ${filesystem} at the staging mountpoint ${quoteName(staging)}`, () =>
        this.overlayOff(job.root.rootfs).then((overlay) =>
          this.zfs.create(filesystem, {
            ...this.createProperties,
            ...this.bounds,
            ...overlay,
            mountpoint: staging,
            [PROP_STATE]: 'staging',
            ...origin,
          }),
        ),
      );
    }
    if (job.dryRun) return;
    const made = await this.zfs.get(filesystem);
    if (!made?.mounted) await job.step('mount', `mount ${filesystem}`, () => this.zfs.mount(filesystem));
  }

  /** Before the commit: a copy that would not fit the configured quota is refused (and rolled back). */
  private async checkHeadroom(filesystem: string): Promise<void> {
    const quota = this.limits.filter(([k]) => k === 'quota' || k === 'refquota').map(([k, v]) => [k, parseSize(v)] as const);
    if (!quota.some(([, bytes]) => bytes !== undefined)) return;
    const used = await this.zfs.usedBytes(filesystem);
    for (const [key, bytes] of quota) {
      if (bytes !== undefined && used > bytes) {
        throw new RefusedError(
          `the new filesystem would be over its ${key}: the copy uses ${used} bytes, ${key} is ${this.opts.properties[key]} (${bytes} bytes)`,
          { permanent: true },
        );
      }
    }
  }

  /**
   * (STAGE.commit) Checks the copy fits the configured quota, moves the original into the holding
   * directory, records the commit point, sets the limits, and only then puts the dataset at the
   * original path.
   */
  async swap(job: Job): Promise<void> {
    const filesystem = await this.datasetOf(job);
    if (job.dryRun) {
      const { aside } = jobPaths(job.root.rootdir, job.name);
      await job.step('move-aside', `move the original into the holding directory (${quoteName(aside)})`, async () => undefined);
      await job.step('make-mountpoint', `make the mountpoint ${quoteName(job.path)} (root's, empty)`, async () => undefined);
      await job.step('mount-in-place', `mount ${filesystem} at ${quoteName(job.path)}`, async () => undefined);
      return;
    }
    const ds = await this.zfs.get(filesystem);
    if (!ds) throw new Error(`${filesystem} has disappeared`);
    if (!job.record.committed && !isCommitted(ds)) {
      await this.commit(job, filesystem, ds);
    } else if (!job.record.committed) {
      await job.commit();
    }
    // The limits hold from the commit on, before the dataset is mounted where users write: a
    // held original never keeps it unlimited. A late change that no longer fits is not
    // caught up: the verification cannot pass, and the original is kept (rsync says so).
    await this.setLimits(job, filesystem);
    await this.putInPlace(job, filesystem, await this.asideOf(job));
  }

  /** Up to the commit point: the original moved aside (identity-checked), root's empty mountpoint made, the commit recorded. */
  private async commit(job: Job, filesystem: string, ds: DatasetInfo): Promise<void> {
    const { aside } = jobPaths(job.root.rootdir, job.name);
    await this.checkHeadroom(filesystem);
    if (ds.state === 'staging') {
      await job.step('mark', `mark ${filesystem} as swapping`, async () => {
        await this.zfs.setAll(filesystem, { [PROP_ASIDE]: aside, [PROP_STATE]: 'swapping' });
      });
    }
    await job.setJournalled({ aside });
    const identity = job.record.identity ?? ds.origin;
    if (!identity) throw new Error('the original directory was never identified');
    if (!(await exists(aside))) {
      await job.step('move-aside', `move the original into the holding directory (${quoteName(aside)})`, async () => {
        await this.levels(job);
        await assertSameDirectory(job.path, identity);
        await rename(job.path, aside);
        if (!sameIdentity(await identityOf(aside), identity)) {
          await rename(aside, job.path);
          throw new RefusedError(`${quoteName(job.path)} changed under us while being moved; put back`);
        }
      });
    } else if (!sameIdentity(await identityOf(aside), identity)) {
      throw new Error(`${quoteName(aside)} is not the recorded original; left alone`);
    }
    // The mountpoint, made by root at once: in the instant the path was free, anything a user
    // made there (a symbolic link included) stops the job before its commit point.
    await job.step('make-mountpoint', `make the mountpoint ${quoteName(job.path)} (root's, empty)`, async () => {
      await this.levels(job);
      const place = await makeMountpoint(job.root.rootdir, job.path);
      if ('problem' in place) {
        throw new AdvisedError(
          `${quoteName(job.path)} was made again while the original was being moved aside (${place.problem.why}); keeping both (the original at ${quoteName(aside)}): move ${quoteName(job.path)} out of the way, then run 'zfs-dynamic-creator recover'`,
        );
      }
    });
    // The commit point, recorded before the dataset is made visible: from here on users may
    // write into it, so it is only ever finished, never rolled back.
    await job.commit();
    await job.step('mark', `mark ${filesystem} as committed (swapped)`, () => this.zfs.set(filesystem, PROP_STATE, 'swapped'));
  }

  /** Sets quota, refquota, reservation and refreservation; one that cannot be set is reported, never fatal past the commit. */
  private async setLimits(job: Job, filesystem: string): Promise<void> {
    // Once each, at the commit: a recovery never sets back a limit an administrator has raised since.
    const done = job.record.steps.filter((s) => s.phase === 'swap' && s.step === 'limit' && s.state === 'done').length;
    for (const [key, value] of this.limits.slice(done)) {
      await job.step('limit', `set ${key}=${value} on ${filesystem}`, async () => {
        try {
          await this.zfs.set(filesystem, key, value);
        } catch (error) {
          // Past the commit (users may already have written more, or the pool has no room for a
          // reservation): reported with the command to run, not a reason to leave the job unfinished.
          job.log.error(
            `could not set ${key}=${value} on ${filesystem}: ${(error as Error).message.split('\n')[0]}; set it by hand once there is room: zfs set ${key}=${value} ${filesystem}`,
          );
        }
      });
    }
  }

  /** After the commit: the dataset mounted at the original path, or a message that says exactly what to do. */
  private async putInPlace(job: Job, filesystem: string, aside: string | undefined): Promise<void> {
    const ds = await this.zfs.get(filesystem);
    if (!ds) throw new Error(`${filesystem} has disappeared`);
    if (ds.mounted && ds.mountpoint === job.path) return;
    const staging = jobPaths(job.root.rootdir, job.name).staging;
    if (ds.mounted && ds.mountpoint !== staging && ds.mountpoint !== job.path) {
      throw new Error(`${filesystem} is mounted at ${quoteName(ds.mountpoint)}, not at ${quoteName(job.path)}; it was left as it is`);
    }
    // Something made at the path (before or in the instant of the mount) is never hidden under
    // it, and nothing is mounted through what a user put there (mount(2) follows links).
    const inTheWay = (problem?: MountpointProblem): Error =>
      new AdvisedError(
        `${quoteName(job.path)} ${problem === undefined || problem.kind === 'not-empty' ? 'was made again and is not empty' : `is in the way (${problem.why})`}; keeping both: ${filesystem} (the converted data) stays unmounted at that path` +
          `${aside ? ` and the original at ${quoteName(aside)}` : ''}; move ${quoteName(job.path)} out of the way (mv -- ${quoteName(job.path)} ${quoteName(`${job.path}.moved`)}), then run 'zfs-dynamic-creator recover'`,
      );
    await this.levels(job);
    const place = await makeMountpoint(job.root.rootdir, job.path);
    if ('problem' in place) throw inTheWay(place.problem);
    await job.step('mount-in-place', `mount ${filesystem} at ${quoteName(job.path)}`, async () => {
      try {
        await this.levels(job);
        const problem = await checkMountpoint(job.root.rootdir, job.path, place.identity);
        if (problem !== undefined) throw inTheWay(problem);
        // A mapped name's dataset is mounted at the directory's own path, not at its name's.
        if (ds.mountpoint !== job.path && this.isMapped(job, filesystem)) await this.zfs.set(filesystem, 'mountpoint', job.path);
        else if (ds.mountpoint !== job.path) await this.zfs.inherit(filesystem, 'mountpoint');
        let now = await this.zfs.get(filesystem);
        if (now && !now.mounted) {
          await this.zfs.mount(filesystem);
          now = await this.zfs.get(filesystem);
        }
        if (!now?.mounted || now.mountpoint !== job.path || !(await mountedAt(job.path, job.root.rootdir))) {
          throw new Error(`${filesystem} did not mount at ${quoteName(job.path)}`);
        }
      } catch (error) {
        if (!(await emptyOrAbsent(job.path))) throw inTheWay();
        throw error;
      }
    });
  }

  /** (STAGE.finish) Once the original is gone: the staging directory removed, readonly, snapshot, marked live. */
  async cleanup(job: Job): Promise<void> {
    const filesystem = await this.datasetOf(job);
    for (const staging of this.stagingDirs(job)) {
      if (job.dryRun || (await exists(staging))) {
        await job.step('remove-staging-dir', `remove the empty staging mountpoint ${quoteName(staging)}`, () => removeEmptyDir(staging));
      }
      if (job.dryRun) break;
    }
    const aside = job.dryRun ? undefined : await this.asideOf(job);
    if (aside !== undefined) throw new Error(`the original is still at ${quoteName(aside)}; not marking ${filesystem} live`);
    // Finished: the original is gone and the copy was verified before it was removed. readonly
    // first, so that the snapshot holds exactly what stays; without readonly, users may be
    // writing while it is taken (it is atomic: it holds what was written up to that instant).
    // Both are safe to run again (recovery after a crash between them): readonly=on is set
    // again, and a snapshot already there (only this job makes one on its new dataset) is kept.
    if (this.opts.readonly) {
      await job.step('readonly', `set readonly=on on ${filesystem} (a finished run: nobody can write to it any more)`, () =>
        this.zfs.set(filesystem, 'readonly', 'on'),
      );
    }
    if (this.opts.snapshot !== undefined) {
      const snapshot = `${filesystem}@${this.opts.snapshot}`;
      await job.step('snapshot', `snapshot ${snapshot}`, async () => {
        if (await this.zfs.snapshotExists(snapshot))
          job.log.info(`${snapshot} is already there (made by an earlier run of this job); kept`);
        else await this.zfs.snapshot(snapshot);
      });
    }
    // A run that completed before its conversion: its snapshot now, named after its completion.
    await this.completion.atFinish(job, job.record.filesystem ?? filesystem);
    await job.step('mark', `mark ${filesystem} live`, async () => {
      // Its history first (PROP_HISTORY says what each means), then the state that says it is done.
      await this.zfs.setAll(filesystem, { ...historyOf(job), [PROP_STATE]: 'live' });
      await this.zfs.inherit(filesystem, PROP_ASIDE);
    });
  }

  /** Only before the commit point: the original moved back, the dataset destroyed when it provably holds nothing but a copy. */
  async rollback(job: Job): Promise<void> {
    const filesystem = await this.datasetOf(job);
    const ds = await this.zfs.get(filesystem);
    if (job.record.committed || isCommitted(ds) || (ds?.mounted && ds.mountpoint === job.path)) {
      throw new Error(`${filesystem} passed its commit point; it is finished by 'zfs-dynamic-creator recover', never undone`);
    }
    const identity = job.record.identity ?? ds?.origin;
    const aside = await this.asideOf(job);
    if (aside !== undefined) {
      await this.levels(job);
      // The tool's own empty mountpoint (made after the move aside) goes first.
      if (!(await removeOwnMountpoint(job.path))) {
        throw new AdvisedError(
          `both the original (kept at ${quoteName(aside)}) and a new ${quoteName(job.path)} exist; keeping both: move ${quoteName(job.path)} out of the way, then run 'zfs-dynamic-creator recover' (it moves the original back)`,
        );
      }
      if (!sameIdentity(await identityOf(aside), identity)) {
        throw new Error(`${quoteName(aside)} is not the recorded original directory; left alone`);
      }
      await job.step('move-back', `move the original back from ${quoteName(aside)}`, async () => {
        await this.levels(job);
        await rename(aside, job.path);
      });
    }
    if (ds && (ds.state === 'staging' || ds.state === 'swapping')) {
      // Destroyed only when it provably holds nothing but a copy: never mounted at the
      // original path (its state says so) and the original back at its path, the same directory.
      if (!sameIdentity(await identityOf(job.path), identity)) {
        throw new Error(
          `the original directory is not at ${quoteName(job.path)} with its recorded identity; ${filesystem} (a copy) is kept`,
        );
      }
      await job.step('destroy', `destroy ${filesystem}, which held only a copy`, () => this.zfs.destroy(filesystem));
    }
    for (const staging of this.stagingDirs(job)) {
      if (await exists(staging))
        await job.step('remove-staging-dir', `remove the staging mountpoint ${quoteName(staging)}`, () => removeEmptyDir(staging));
    }
  }

  /** Recovery: the dataset's own record of the commit (its state property). */
  async assess(job: Job): Promise<Assessment> {
    const filesystem = await this.datasetOf(job);
    const ds = await this.zfs.get(filesystem);
    const aside = await this.asideOf(job);
    const staging = jobPaths(job.root.rootdir, job.name).staging;
    let stagingThere = false;
    for (const dir of this.stagingDirs(job)) stagingThere ||= await exists(dir);
    const ours = ds !== undefined && ds.state !== undefined;
    const fields = {
      filesystem,
      staging,
      ...(aside !== undefined ? { aside } : {}),
      ...(job.record.identity === undefined && ds?.origin ? { identity: ds.origin } : {}),
    };
    if (!ours && aside === undefined && !stagingThere) return { committed: false, nothingLeft: true, fields };
    return { committed: isCommitted(ds), fields };
  }
}
