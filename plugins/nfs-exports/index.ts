/**
 * nfs-exports: each new filesystem is exported over NFS.
 *
 * mode 'drop-in'       (default) our own file /etc/exports.d/zfs-dynamic-creator.exports;
 *                      /etc/exports is never written.
 * mode 'exports-file'  /etc/exports itself (the original --add-export): our lines live in a
 *                      block `# BEGIN zfs-dynamic-creator <rootdir>` … `# END …`. As the
 *                      original script did, a line outside the block for a path under rootdir
 *                      counts as the tool's too: publishing a path that has one updates it in
 *                      place (the rootdir's clients), and removeStale removes one for a direct
 *                      child of rootdir that has no dataset. Every other line (comments,
 *                      continuations, other exports, rootdir's own) is kept byte for byte.
 * mode 'sharenfs'      `zfs set sharenfs=<sharenfs> <dataset>`; no file is written. The steps
 *                      are the zfs plugin's (plugins/zfs/sharenfs.ts), run with its command.
 *
 * Clients come from the `clients` option or, without it, from the rootdir's own
 * line in the exports file (or an exports.d file), with any `fsid=` dropped.
 * Paths are written in exportfs's `\ooo` form: a name can never add a client or
 * an option. Every write is atomic and a compare-and-swap (cas.ts): the file is
 * replaced only if it is still what the plan was made from; if someone edited it
 * meanwhile, the plan is made again on top of their version. The previous file is
 * kept as a backup. When `exportfs -r` rejects the result, the previous file is put
 * back only if the file is still what we wrote; if it was edited meanwhile, our change
 * is taken out on top of the edit when it touched only our block, and otherwise the
 * file is left as it is, with a message naming the backup (exports-file.ts).
 *
 * publish  export the job's path
 * sync     export every filesystem of the root; with removeStale, drop our lines for
 *          paths that are no longer filesystems (in exports-file mode also the original
 *          script's lines for children of rootdir without a dataset)
 * prepare  exportfs is there, and the root has clients to give
 */
import { definePlugin, quoteName, type Job, type RootContext, type Survey } from '../../src/index.js';
import { Sharenfs } from '../zfs/sharenfs.js';
import { exportsDoctor } from './doctor.js';
import { ExportsFile } from './exports-file.js';
import { normalizePath } from './exports.js';
import { options, type Options } from './options.js';

const NAME = 'nfs-exports';

/** Filesystems of the root that are live at a path under it: their names (as the survey gives them) and paths. */
function livePaths(root: RootContext, survey: Survey): Map<string, string> {
  const paths = new Map<string, string>();
  for (const [name, fs] of survey.filesystems) {
    if (!fs.mounted || survey.leftovers.has(name)) continue;
    if (!fs.mountpoint.startsWith(`${root.rootdir}/`)) continue;
    // A survey from a filesystem plugin that does not name its filesystems: <rootfs>/<name>,
    // as the zfs plugin names them.
    paths.set(fs.filesystem ?? `${root.rootfs}/${name}`, normalizePath(fs.mountpoint));
  }
  return paths;
}

async function publish(file: ExportsFile, job: Job): Promise<void> {
  const target = file.target;
  await job.step('nfs-export', `export ${quoteName(job.path)} in ${target}`, async () => {
    const { added, updated } = await file.locked(() => file.update(job.root, job.log, [job.path]));
    const what =
      added.length > 0
        ? `exported over NFS in ${target}`
        : updated.length > 0
          ? `its existing line in ${target} now has the clients of the root`
          : 'already exported over NFS';
    job.log.info(what, { step: 'publish/nfs-export' });
  });
}

async function sync(file: ExportsFile, removeStale: boolean, root: RootContext, survey: Survey): Promise<void> {
  const target = file.target;
  const paths = [...livePaths(root, survey).values()].sort();
  // The original script's lines stay for a child that has a dataset in any state (mid-job, unmounted).
  const datasets = new Set<string>();
  for (const [name, fs] of survey.filesystems) {
    if (!name.includes('/')) datasets.add(`${root.rootdir}/${name}`);
    datasets.add(normalizePath(fs.mountpoint));
  }
  const body = () => file.update(root, root.log, paths, removeStale ? new Set(paths) : undefined, datasets);
  const { added, removed, updated } = root.dryRun ? await body() : await file.locked(body);
  const would = root.dryRun ? 'would ' : '';
  for (const p of added) root.log.notice(`${would}export ${quoteName(p)} in ${target}`, { step: 'sync/nfs-export' });
  for (const p of updated)
    root.log.notice(`${would}give the existing export of ${quoteName(p)} in ${target} the clients of ${quoteName(root.rootdir)}`, {
      step: 'sync/nfs-export',
    });
  for (const p of removed)
    root.log.notice(`${would}remove the stale export of ${quoteName(p)} from ${target}`, { step: 'sync/nfs-export' });
}

export default definePlugin<Options>({
  name: NAME,
  description: 'exports each new filesystem over NFS (exports.d file, /etc/exports, or sharenfs)',
  options,
  apply(hooks, { options: opts, stateDir }) {
    hooks.doctor.tapPromise(NAME, (checks, doctor) => exportsDoctor(checks, doctor, opts));
    if (opts.mode === 'sharenfs') {
      const share = new Sharenfs(hooks, opts.sharenfs);
      hooks.prepare.tapPromise(NAME, (root) => share.prepare(root));
      hooks.publish.tapPromise(NAME, (job) => share.publish(job));
      hooks.sync.tapPromise(NAME, (root, survey) => share.sync(root, livePaths(root, survey).keys()));
      return;
    }
    const file = new ExportsFile(opts, stateDir);
    hooks.prepare.tapPromise(NAME, (root) => file.check(root));
    hooks.publish.tapPromise(NAME, (job) => publish(file, job));
    hooks.sync.tapPromise(NAME, (root, survey) => sync(file, opts.removeStale, root, survey));
  },
});
