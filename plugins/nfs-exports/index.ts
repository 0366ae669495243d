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
 * mode 'sharenfs'      `zfs set sharenfs=<sharenfs> <dataset>`; no file is written.
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
 * file is left as it is, with a message naming the backup.
 *
 * publish  export the job's path
 * sync     export every filesystem of the root; with removeStale, drop our lines for
 *          paths that are no longer filesystems (in exports-file mode also the original
 *          script's lines for children of rootdir without a dataset)
 * prepare  exportfs is there, and the root has clients to give
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as z from 'zod';
import {
  RefusedError,
  acquireLock,
  definePlugin,
  isErrno,
  oneLine,
  quoteName,
  run,
  type Logger,
  type RootContext,
  type Survey,
} from '../../src/index.js';
import { readState, replaceIf, sameState, writeAtomic, type FileState } from './cas.js';
import { exportsDoctor } from './doctor.js';
import { clientsOf, inheritableClients, normalizePath, parseClients, parseExports, planExports, undoOnTop, type Plan } from './exports.js';

const NAME = 'nfs-exports';

const absolutePath = z.string().regex(/^\/[^\0\n]*$/, 'an absolute path on one line');

const options = z
  .object({
    mode: z.enum(['exports-file', 'drop-in', 'sharenfs']).default('drop-in'),
    /** The system's exports file: written in 'exports-file' mode, read for clients in every mode. */
    exportsFile: absolutePath.default('/etc/exports'),
    /** Our own file, in 'drop-in' mode. exportfs reads /etc/exports.d/*.exports. */
    dropInFile: absolutePath.regex(/\.exports$/, 'a file name ending in .exports (exportfs reads only those)').default('/etc/exports.d/zfs-dynamic-creator.exports'),
    /** Clients for every new export, e.g. "10.0.0.0/8(rw,no_subtree_check) host1(ro)". Default: the rootdir's own. */
    clients: z
      .string()
      .transform((text, ctx) => {
        const parsed = parseClients(text);
        if ('problem' in parsed) {
          ctx.addIssue({ code: 'custom', message: parsed.problem });
          return z.NEVER;
        }
        return parsed.clients;
      })
      .optional(),
    /** The value of the sharenfs property, in 'sharenfs' mode. */
    sharenfs: z.string().regex(/^[^\0\n]+$/, 'one line').default('on'),
    /** The sync hook also removes our exports of paths that are no longer filesystems. */
    removeStale: z.boolean().default(false),
    exportfsCommand: z.string().min(1).default('exportfs'),
    zfsCommand: z.string().min(1).default('zfs'),
    /** The previous version of a file we write is kept next to it with this suffix. */
    backupSuffix: z.string().regex(/^[^/\0\n]+$/, 'a file name suffix without "/"').default('.zfs-dynamic-creator.bak'),
  })
  .strict();

type Options = z.infer<typeof options>;

/** How many times a write is planned again on top of someone else's edit before giving up. */
const ATTEMPTS = 5;

/** A file's text as a binary string (see exports.ts): one character per byte. */
function textOf(state: FileState): string {
  return state.exists ? state.content.toString('latin1') : '';
}

async function readText(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'latin1');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
}

export default definePlugin<Options>({
  name: NAME,
  description: 'exports each new filesystem over NFS (exports.d file, /etc/exports, or sharenfs)',
  options,
  apply(hooks, { options: opts, stateDir }) {
    hooks.doctor.tapPromise(NAME, (checks, doctor) => exportsDoctor(checks, doctor, opts));
    const target = opts.mode === 'exports-file' ? opts.exportsFile : opts.dropInFile;
    const backup = `${target}${opts.backupSuffix}`;
    const exportsDir = dirname(opts.dropInFile);
    // Configured clients as binary strings, like the text they are written into.
    const configuredClients = opts.clients?.map((c) => Buffer.from(c, 'utf8').toString('latin1'));

    /** Every exports file exportfs reads, except the one we write. */
    async function otherFiles(): Promise<string[]> {
      const names = await readdir(exportsDir).catch(() => [] as string[]);
      const files = [opts.exportsFile, ...names.filter((n) => n.endsWith('.exports')).sort().map((n) => join(exportsDir, n))];
      const texts: string[] = [];
      for (const file of files) {
        if (file === target) continue;
        const text = await readText(file);
        if (text !== undefined) texts.push(text);
      }
      return texts;
    }

    /** The clients a new export of `rootdir` gets; throws a one-line error when there are none. */
    function clientsFor(rootdir: string, texts: readonly string[]): string[] {
      if (configuredClients) return configuredClients;
      for (const text of texts) {
        const found = clientsOf(parseExports(text), rootdir);
        if (found && found.length > 0) return inheritableClients(found);
      }
      throw new RefusedError(
        `nfs-exports: ${quoteName(rootdir)} has no line in ${opts.exportsFile} or ${exportsDir}/*.exports to take NFS clients from, and the 'clients' option is not set`,
      );
    }

    /** Serializes writers of the target file across processes. */
    async function locked<T>(body: () => Promise<T>): Promise<T> {
      const id = `nfs-exports-${createHash('sha256').update(target).digest('hex').slice(0, 16)}`;
      const lock = await acquireLock(stateDir, id, { staleMs: 30_000, waitMs: 60_000 });
      try {
        return await body();
      } finally {
        await lock.release();
      }
    }

    /**
     * Writes `after` in place of `before` if the file is still `before` (compare-and-swap),
     * keeping `before` as the backup. Returns false, writing nothing, when the file changed
     * since it was read. When exportfs rejects the result, takes our change out again
     * without ever overwriting an edit made after our write (see restore).
     */
    async function install(rootdir: string, before: FileState, after: string, log: Logger): Promise<boolean> {
      if (before.exists) await writeAtomic(backup, before.content, before.mode);
      else await mkdir(dirname(target), { recursive: true, mode: 0o755 });
      const swap = await replaceIf(target, before, Buffer.from(after, 'latin1'));
      if (!swap.ok) return false;
      try {
        await run(opts.exportfsCommand, ['-r']);
      } catch (error) {
        await restore(rootdir, before, after, swap.written, error, log);
      }
      return true;
    }

    /**
     * After exportfs rejected `ours` (written as `written`): the previous version goes back
     * only over exactly what we wrote. If someone edited the file since, our change is
     * taken out on top of their version when it touched only our block; otherwise the file
     * is left as it is. Always throws, saying which it was.
     */
    async function restore(rootdir: string, before: FileState, ours: string, written: FileState, rejected: unknown, log: Logger): Promise<never> {
      const why = `exportfs -r rejected the new ${target} (${oneLine(rejected)})`;
      let current = written;
      let merged = false;
      for (let attempt = 1; ; attempt++) {
        let goal: Buffer | undefined;
        if (sameState(current, written)) {
          goal = before.exists ? before.content : undefined;
        } else {
          const undone = undoOnTop(textOf(before), ours, textOf(current), rootdir);
          if (undone === undefined) {
            const saved = before.exists ? `the version before our change is in ${backup}` : 'there was no file before our change';
            throw new Error(`${why}; ${target} was changed by someone else after our write, so it was left as it is, not restored (${saved}): check it and run exportfs -r`);
          }
          goal = Buffer.from(undone, 'latin1');
          merged = true;
        }
        const swap = await replaceIf(target, current, goal);
        if (swap.ok) break;
        if (attempt >= ATTEMPTS) throw new Error(`${why}; ${target} kept changing while we tried to take our change out, so it was left as it is: check it and run exportfs -r`);
        log.warn(`${target} was changed by someone else after our write; taking our change out on top of their version`);
        current = swap.current;
      }
      await run(opts.exportfsCommand, ['-r']).catch((again: unknown) => log.warn(`exportfs -r still fails after restoring ${target}: ${oneLine(again)}`));
      throw new Error(merged ? `${why}; our change was taken out again, keeping the edit someone else made meanwhile` : `${why}; the previous version was restored`);
    }

    /** Adds exports of `add` (and with keepOnly, removes ours of other paths). Returns what changed. */
    async function update(ctx: RootContext, log: Logger, add: readonly string[], keepOnly?: ReadonlySet<string>, datasets?: ReadonlySet<string>): Promise<Plan> {
      for (let attempt = 1; ; attempt++) {
        const before = await readState(target);
        const others = await otherFiles();
        const text = textOf(before);
        const all = before.exists ? [text, ...others] : others;
        const plan = planExports({
          target: text,
          others,
          rootdir: ctx.rootdir,
          add,
          keepOnly,
          clients: () => clientsFor(ctx.rootdir, all),
          seedLines: opts.mode === 'exports-file' ? { datasets: datasets ?? new Set() } : undefined,
        });
        if (plan.text === text || ctx.dryRun) return plan;
        if (await install(ctx.rootdir, before, plan.text, log)) return plan;
        if (attempt >= ATTEMPTS) throw new Error(`${target} kept changing while we tried to write it (someone else is editing it); nothing was written, try again`);
        log.info(`${target} was changed by someone else while we were writing it; planning again on top of their version`);
      }
    }

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

    /** Sets sharenfs; a share that fails once the property is set is a warning (zfs-fuse shares by calling exportfs). */
    //
    // The zfs calls that stay here are sharenfs mode's own business, which no other plugin does:
    // setting and reading the sharenfs property (setSharenfs), and in the sync reading every
    // dataset's sharenfs value in one `zfs list` (the survey has names, mountpoints and mount
    // state, not this property). Which datasets exist, are live and where they are mounted comes
    // from the survey and the job record, never from zfs here.
    async function setSharenfs(dataset: string, log: Logger): Promise<void> {
      try {
        await run(opts.zfsCommand, ['set', `sharenfs=${opts.sharenfs}`, dataset]);
      } catch (error) {
        const now = (await run(opts.zfsCommand, ['get', '-H', '-o', 'value', 'sharenfs', dataset])).stdout.trim();
        if (now !== opts.sharenfs) throw error;
        log.warn(`sharenfs=${opts.sharenfs} is set on ${dataset}, but sharing it failed: ${oneLine(error)}`, { step: 'publish/sharenfs' });
      }
    }

    hooks.prepare.tapPromise(NAME, async (root) => {
      if (opts.mode === 'sharenfs') {
        // The zfs command is there and knows the sharenfs property.
        await run(opts.zfsCommand, ['get', '-H', '-o', 'value', 'sharenfs', root.rootfs]);
        return;
      }
      // `exportfs -h` prints usage; what matters is that it runs (a missing one says "exportfs not found").
      await run(opts.exportfsCommand, ['-h'], { okExitCodes: [0, 1, 2] });
      const before = await readText(target);
      clientsFor(root.rootdir, before === undefined ? await otherFiles() : [before, ...(await otherFiles())]);
    });

    hooks.publish.tapPromise(NAME, async (job) => {
      if (opts.mode === 'sharenfs') {
        // The dataset the filesystem plugin recorded (the provision phase sets it, recovery's
        // assessment too), never a name derived here.
        const dataset = job.record.filesystem;
        if (dataset === undefined) throw new Error('no filesystem was recorded for this job (the provision phase records it), so there is no dataset to set sharenfs on');
        await job.step('sharenfs', `set sharenfs=${opts.sharenfs} on ${dataset}`, () => setSharenfs(dataset, job.log));
        return;
      }
      await job.step('nfs-export', `export ${quoteName(job.path)} in ${target}`, async () => {
        const { added, updated } = await locked(() => update(job.root, job.log, [job.path]));
        const what = added.length > 0 ? `exported over NFS in ${target}` : updated.length > 0 ? `its existing line in ${target} now has the clients of the root` : 'already exported over NFS';
        job.log.info(what, { step: 'publish/nfs-export' });
      });
    });

    hooks.sync.tapPromise(NAME, async (root, survey) => {
      const live = livePaths(root, survey);
      if (opts.mode === 'sharenfs') {
        // Root-wide, one call: the sharenfs value of every dataset (not in the survey), so that
        // only those that lack it are set.
        const out = (await run(opts.zfsCommand, ['list', '-H', '-r', '-t', 'filesystem', '-o', 'name,sharenfs', root.rootfs])).stdout;
        const current = new Map(out.split('\n').filter(Boolean).map((l) => l.split('\t') as [string, string]));
        for (const dataset of live.keys()) {
          if (current.get(dataset) === opts.sharenfs) continue;
          if (root.dryRun) root.log.info(`would set sharenfs=${opts.sharenfs} on ${dataset}`, { step: 'sync/sharenfs' });
          else await setSharenfs(dataset, root.log);
        }
        return;
      }
      const paths = [...live.values()].sort();
      // The original script's lines stay for a child that has a dataset in any state (mid-job, unmounted).
      const datasets = new Set<string>();
      for (const [name, fs] of survey.filesystems) {
        if (!name.includes('/')) datasets.add(`${root.rootdir}/${name}`);
        datasets.add(normalizePath(fs.mountpoint));
      }
      const body = () => update(root, root.log, paths, opts.removeStale ? new Set(paths) : undefined, datasets);
      const { added, removed, updated } = root.dryRun ? await body() : await locked(body);
      const would = root.dryRun ? 'would ' : '';
      for (const p of added) root.log.notice(`${would}export ${quoteName(p)} in ${target}`, { step: 'sync/nfs-export' });
      for (const p of updated) root.log.notice(`${would}give the existing export of ${quoteName(p)} in ${target} the clients of ${quoteName(root.rootdir)}`, { step: 'sync/nfs-export' });
      for (const p of removed) root.log.notice(`${would}remove the stale export of ${quoteName(p)} from ${target}`, { step: 'sync/nfs-export' });
    });
  },
});
