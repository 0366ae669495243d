/**
 * zfs: the filesystem side of the lifecycle.
 *
 * provision  zfs create <rootfs>/<name> at a hidden staging mountpoint in the same root
 * swap       move the original aside (one rename), then `zfs inherit mountpoint`: the dataset
 *            appears at the original path. No `zfs rename`, which zfs-fuse cannot do on a
 *            mounted dataset.
 * cleanup    remove the empty staging mountpoint, mark the dataset live
 * rollback   before the commit: move the original back, destroy the dataset we made
 * assess     recovery: read what is on disk
 * survey     rootfs and its children in one `zfs list`
 */
import { lstat, realpath, rename, rmdir } from 'node:fs/promises';
import { z } from 'zod';
import {
  RefusedError,
  assertSameDirectory,
  definePlugin,
  helperPath,
  isHelperName,
  isErrno,
  quoteName,
  type Job,
  type RootContext,
} from '../../src/core/index.js';
import { PROP_ASIDE, PROP_STATE, Zfs, datasetNameProblem, type DatasetInfo } from './zfs.js';

const NAME = 'zfs';

const propertyValue = z.string().refine((v) => !/[\n\0]/.test(v), 'must be one line');
const options = z
  .object({
    /** Properties set on every new dataset, e.g. { compression: "on", quota: "2T" }. */
    properties: z.record(z.string().regex(/^[a-z][a-z0-9_.:-]*$/, 'a ZFS property name'), propertyValue).default({}),
    /** The zfs command. */
    command: z.string().min(1).default('zfs'),
    /** Tries for commands zfs answers "busy" to. */
    busyAttempts: z.number().int().min(1).max(20).default(8),
    busyFirstDelayMs: z.number().int().min(1).default(250),
  })
  .strict();

type Options = z.infer<typeof options>;


async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return false;
    throw error;
  }
}

async function removeEmptyDir(path: string): Promise<void> {
  try {
    await rmdir(path);
  } catch (error) {
    if (!isErrno(error, 'ENOENT')) throw error;
  }
}

export default definePlugin<Options>({
  name: NAME,
  description: 'creates the dataset, swaps it in by mountpoint, undoes or finishes interrupted jobs',
  options,
  apply(hooks, { options: opts, log }) {
    const zfs = new Zfs(opts.command, log, opts.busyAttempts, opts.busyFirstDelayMs);
    // OpenZFS on Linux may mount over a non-empty directory (overlay=on), which would hide
    // whatever was created at the original path in the instant the dataset is mounted there.
    // With overlay=off the mount fails instead, and the job keeps both. zfs-fuse never overlays.
    let noOverlay: Promise<Record<string, string>> | undefined;
    const overlayOff = (rootfs: string): Promise<Record<string, string>> =>
      (noOverlay ??= zfs.knowsProperty(rootfs, 'overlay').then((known): Record<string, string> => (known ? { overlay: 'off' } : {})));
    const datasetOf = (job: Job): string => job.record.filesystem ?? `${job.root.rootfs}/${job.name}`;

    hooks.prepare.tapPromise(NAME, async (root: RootContext) => {
      const info = await zfs.get(root.rootfs);
      if (!info) throw new RefusedError(`ZFS filesystem ${root.rootfs} does not exist`);
      if (!info.mounted) throw new RefusedError(`ZFS filesystem ${root.rootfs} is not mounted`);
      const [a, b] = await Promise.all([realpath(root.rootdir).catch(() => root.rootdir), realpath(info.mountpoint).catch(() => info.mountpoint)]);
      if (a !== b) {
        throw new RefusedError(`${root.rootdir} is not the mountpoint of ${root.rootfs} (it is mounted at ${info.mountpoint})`);
      }
    });

    hooks.survey.tapPromise(NAME, async (survey, root) => {
      const { children } = await zfs.children(root.rootfs);
      const prefix = `${root.rootdir}/`;
      for (const ds of children) {
        const name = ds.name.slice(root.rootfs.length + 1);
        survey.filesystems.set(name, { mountpoint: ds.mountpoint, mounted: ds.mounted });
        if (ds.state !== undefined && ds.state !== 'live') survey.leftovers.add(name);
        // A directory that is some dataset's mountpoint is not a plain directory.
        if (ds.mounted && ds.mountpoint.startsWith(prefix)) {
          const at = ds.mountpoint.slice(prefix.length);
          if (!at.includes('/') && at !== name) survey.ignored.add(at);
        }
      }
      return survey;
    });

    hooks.filter.tapPromise(NAME, async (job) => {
      if (isHelperName(job.name)) return { skip: 'a helper directory of zfs-dynamic-creator itself' };
      const problem = datasetNameProblem(job.root.rootfs, job.name);
      if (problem) throw new RefusedError(`${quoteName(job.name)} cannot become a ZFS dataset: ${problem}; left as it is`);
      const [dir, parent] = await Promise.all([lstat(job.path), lstat(job.root.rootdir)]);
      const existing = await zfs.get(datasetOf(job));
      if (existing) {
        if (existing.state !== undefined && existing.state !== 'live') {
          throw new RefusedError(`${existing.name} is left over from an interrupted conversion; run 'zfs-dynamic-creator recover'`);
        }
        return { skip: `already a filesystem (${existing.name})` };
      }
      if (dir.dev !== parent.dev) return { skip: 'already a mountpoint of another filesystem' };
      return undefined;
    });

    hooks.provision.tapPromise(NAME, async (job) => {
      const filesystem = datasetOf(job);
      const staging = helperPath(job.root.rootdir, job.name, 'staging');
      await job.set({ filesystem, staging });
      const existing = await zfs.get(filesystem);
      if (existing && existing.state !== 'staging') {
        throw new RefusedError(`${filesystem} already exists and was not made by this job`);
      }
      if (!existing) {
        if (await exists(staging)) {
          throw new RefusedError(`${quoteName(staging)} is in the way of the staging mountpoint`);
        }
        await job.step('create', `create ${filesystem} at the staging mountpoint ${quoteName(staging)}`, () =>
          overlayOff(job.root.rootfs).then((overlay) => zfs.create(filesystem, { ...opts.properties, ...overlay, mountpoint: staging, [PROP_STATE]: 'staging' })),
        );
      }
      if (job.dryRun) return;
      const made = await zfs.get(filesystem);
      if (!made?.mounted) await job.step('mount', `mount ${filesystem}`, () => zfs.mount(filesystem));
    });

    hooks.swap.tapPromise(NAME, async (job) => {
      const filesystem = datasetOf(job);
      const aside = job.record.aside ?? helperPath(job.root.rootdir, job.name, 'orig');
      const ds = job.dryRun ? undefined : await zfs.get(filesystem);
      if (!job.dryRun && !ds) throw new Error(`${filesystem} has disappeared`);
      const live = ds !== undefined && ds.mounted && ds.mountpoint === job.path;
      if (!live) {
        if (ds?.state === 'staging') {
          await job.step('mark', `mark ${filesystem} as swapping`, async () => {
            await zfs.set(filesystem, PROP_ASIDE, aside);
            await zfs.set(filesystem, PROP_STATE, 'swapping');
          });
        }
        await job.set({ aside });
        if (job.dryRun || !(await exists(aside))) {
          await job.step('move-aside', `move the original aside to ${quoteName(aside)}`, async () => {
            const identity = job.record.identity;
            if (!identity) throw new Error('the original directory was never identified');
            await assertSameDirectory(job.path, identity);
            await rename(job.path, aside);
            const moved = await lstat(aside);
            if (moved.ino !== identity.ino || moved.dev !== identity.dev || !moved.isDirectory()) {
              await rename(aside, job.path);
              throw new RefusedError(`${quoteName(job.path)} changed under us while being moved; put back`);
            }
          });
        }
        if (!job.dryRun && (await exists(job.path))) {
          throw new Error(`${quoteName(job.path)} was recreated while the original was aside; both are kept`);
        }
        await job.step('mount-in-place', `mount ${filesystem} at ${quoteName(job.path)}`, async () => {
          await zfs.inherit(filesystem, 'mountpoint');
          let now = await zfs.get(filesystem);
          if (now && !now.mounted) {
            await zfs.mount(filesystem);
            now = await zfs.get(filesystem);
          }
          if (!now?.mounted || now.mountpoint !== job.path) {
            throw new Error(`${filesystem} did not mount at ${quoteName(job.path)}`);
          }
        });
      }
      if (job.dryRun) return;
      if (ds?.state !== 'swapped' && ds?.state !== 'live') {
        await job.step('mark', `mark ${filesystem} as swapped`, () => zfs.set(filesystem, PROP_STATE, 'swapped'));
      }
      await job.commit();
    });

    hooks.cleanup.tapPromise({ name: NAME, stage: 10 }, async (job) => {
      const filesystem = datasetOf(job);
      const staging = job.record.staging ?? helperPath(job.root.rootdir, job.name, 'staging');
      await job.step('remove-staging-dir', `remove the empty staging mountpoint ${quoteName(staging)}`, () => removeEmptyDir(staging));
      if (!job.dryRun && job.record.aside !== undefined && (await exists(job.record.aside))) {
        throw new Error(`the original is still at ${quoteName(job.record.aside)}; not marking ${filesystem} live`);
      }
      await job.step('mark', `mark ${filesystem} live`, async () => {
        await zfs.set(filesystem, PROP_STATE, 'live');
        await zfs.inherit(filesystem, PROP_ASIDE);
      });
    });

    hooks.rollback.tapPromise(NAME, async (job) => {
      const filesystem = datasetOf(job);
      const ds = await zfs.get(filesystem);
      const aside = job.record.aside ?? ds?.aside ?? helperPath(job.root.rootdir, job.name, 'orig');
      if (ds && ds.mounted && ds.mountpoint === job.path) {
        throw new Error(`${filesystem} is already live at ${quoteName(job.path)}; it must be finished, not undone`);
      }
      if (await exists(aside)) {
        if (await exists(job.path)) {
          throw new Error(`both the original (aside at ${quoteName(aside)}) and a new ${quoteName(job.path)} exist; keeping both`);
        }
        await job.step('move-back', `move the original back from ${quoteName(aside)}`, () => rename(aside, job.path));
      }
      if (ds && ds.state !== undefined && ds.state !== 'live') {
        await job.step('destroy', `destroy ${filesystem}, which held only a copy`, () => zfs.destroy(filesystem));
      }
      const staging = job.record.staging ?? helperPath(job.root.rootdir, job.name, 'staging');
      await job.step('remove-staging-dir', `remove the staging mountpoint ${quoteName(staging)}`, () => removeEmptyDir(staging));
    });

    hooks.assess.tapPromise(NAME, async (job) => {
      const filesystem = datasetOf(job);
      const ds: DatasetInfo | undefined = await zfs.get(filesystem);
      const aside = job.record.aside ?? ds?.aside ?? helperPath(job.root.rootdir, job.name, 'orig');
      const staging = job.record.staging ?? helperPath(job.root.rootdir, job.name, 'staging');
      const [asideThere, stagingThere] = await Promise.all([exists(aside), exists(staging)]);
      const ours = ds !== undefined && ds.state !== undefined;
      const committed = ours && ds.mounted && ds.mountpoint === job.path;
      const fields = { filesystem, staging, ...(asideThere ? { aside } : {}) };
      if (!ours && !asideThere && !stagingThere) return { committed: false, nothingLeft: true, fields };
      return { committed, fields };
    });
  },
});
