/**
 * zfs: the filesystem side of the lifecycle.
 *
 * provision  zfs create <rootfs>/<name> mounted at a staging directory inside the root-only
 *            holding directory (<rootdir>/.zfs-dynamic-creator), without the properties that
 *            can make a write fail (quota, refquota, reservation, refreservation)
 * swap       (STAGE.commit) check the copy fits the configured quota; move the original into
 *            the holding directory (one rename, identity-checked); record the commit point
 *            (journal, then state=swapped on the dataset), set the limits, and only then
 *            `zfs inherit mountpoint` (a mapped name: `zfs set mountpoint=<path>`) puts the dataset at the original path. No `zfs rename`, which zfs-fuse cannot do on a
 *            mounted dataset.
 * cleanup    (STAGE.finish) once the original is gone: remove the empty staging directory,
 *            readonly=on (option readonly), snapshot <dataset>@<snapshot>
 *            (option snapshot), snapshot a run complete before its conversion (option
 *            snapshotOnComplete), mark the dataset live
 * run        snapshotOnComplete: a run complete and converted is snapshotted (completion.ts)
 * sync       each sweep: a completion snapshot missed, readonly=on after readonlyAfterSeconds
 * rollback   only before the commit point: move the original back (identity-checked), and
 *            destroy the dataset only when it provably holds nothing but a copy
 * assess     recovery: the dataset's own record of the commit (its state property)
 * survey     rootfs and its children in one `zfs list`
 *
 * Every dataset name and helper path is derived from the root and the directory's name (a name ZFS
 * forbids: names.ts, option mapNames; its dataset is found by its recorded name); a journal record
 * that says otherwise is refused, never followed.
 *
 * The steps are ZfsPlugin's methods (plugin.ts), the options options.ts, the zfs commands zfs.ts;
 * nfs-exports' mode sharenfs uses this plugin's zfs (sharenfs.ts).
 */
import { STAGE, definePlugin } from '../../src/index.js';
import { zfsDoctor } from './doctor.js';
import { zfsHistory } from './history.js';
import { options, type Options } from './options.js';
import { ZfsPlugin } from './plugin.js';
import { lendZfs } from './sharenfs.js';

const NAME = 'zfs';

export default definePlugin<Options>({
  name: NAME,
  description: 'creates the dataset, swaps it in by mountpoint, undoes or finishes interrupted jobs',
  options,
  apply(hooks, { options: opts, log, stateDir }) {
    const zfs = new ZfsPlugin(opts, log, stateDir);
    lendZfs(hooks, zfs.zfs);
    hooks.doctor.tapPromise(NAME, (checks, doctor) => zfsDoctor(checks, doctor, opts));
    hooks.history.tapPromise(NAME, (entries, root) => zfsHistory(entries, root, opts.command));
    hooks.prepare.tapPromise(NAME, (root) => zfs.prepare(root));
    hooks.survey.tapPromise(NAME, (survey, root) => zfs.survey(survey, root));
    hooks.filter.tapPromise(NAME, (job) => zfs.filter(job));
    hooks.provision.tapPromise(NAME, (job) => zfs.provision(job));
    hooks.swap.tapPromise({ name: NAME, stage: STAGE.commit }, (job) => zfs.swap(job));
    hooks.cleanup.tapPromise({ name: NAME, stage: STAGE.finish }, (job) => zfs.cleanup(job));
    hooks.rollback.tapPromise(NAME, (job) => zfs.rollback(job));
    hooks.assess.tapPromise(NAME, (job) => zfs.assess(job));
    if (opts.snapshotOnComplete !== undefined) hooks.run.tapPromise(NAME, (event) => zfs.completion.onRun(event));
    if (zfs.completion.wanted) hooks.sync.tapPromise(NAME, (root) => zfs.completion.sweep(root));
  },
});
