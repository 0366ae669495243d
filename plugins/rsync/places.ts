/**
 * The places a job's steps meet: its manifest (the baseline), the moved-aside original, the live
 * dataset. Each opened by descriptor, identity-checked where it is the user's.
 */
import { originalPlace, AdvisedError, DamagedStateError, oneLine, openDir, quoteName, type DirRef, type Job } from '../../src/index.js';
import { Manifest, manifestPath, setAsideManifest } from './manifest.js';
import type { RsyncContext } from './options.js';

export function manifestOf(ctx: RsyncContext, job: Job): string {
  return manifestPath(ctx.stateDir, job.id);
}

/** Whether a removal of the original began in an earlier run (it may have locked directories). */
export function removalBegan(job: Job): boolean {
  return job.record.steps.some((s) => s.phase === 'cleanup' && s.step === 'remove-original');
}

/** A damaged manifest is set aside, and the error says what the next run does without it. */
async function damaged(e: DamagedStateError, aside: string): Promise<Error> {
  const what = `the job's copy manifest ${quoteName(e.file)} is damaged (${e.detail})`;
  const moved = await setAsideManifest(e.file).catch((m: unknown) => new Error(oneLine(m)));
  const without = 'verifies without it and keeps, as conflicts to settle, the entries the original and the dataset disagree on';
  const kept = `the original is kept at ${quoteName(aside)}`;
  return new AdvisedError(
    typeof moved === 'string'
      ? `${what}: moved to ${quoteName(moved)}; ${kept}; the next 'zfs-dynamic-creator recover' ${without}`
      : `${what} and could not be moved aside (${moved.message}); ${kept}; move the file away, then run 'zfs-dynamic-creator recover', which ${without}`,
    { cause: e },
  );
}

/**
 * The baseline after the commit. A torn last line (a crash) is dropped; a damaged manifest is
 * set aside and the job stops once, saying so: the next run verifies without it (safely:
 * every difference is then a conflict), so damage never wedges the job.
 */
export async function openBaseline(ctx: RsyncContext, job: Job, aside: string): Promise<Manifest | undefined> {
  const manifest = await Manifest.open(manifestOf(ctx, job), { onDamage: (e) => damaged(e, aside) });
  if (manifest?.torn)
    job.log.info(
      `the last line of ${quoteName(manifest.path)} was cut short (a crash or a full disk); it is dropped and cut off before the next record`,
    );
  return manifest;
}

/** The moved-aside original, if it is still there: new layout, or that of older versions. */
/** The original moved aside, opened and identity-checked (undefined: not aside, e.g. already removed). */
export async function openAside(job: Job): Promise<{ ref: DirRef; path: string } | undefined> {
  const place = await originalPlace(job, { anyDirectory: true });
  if (place?.at !== 'aside') return undefined;
  try {
    return { ref: await openDir(place.path, job.record.identity), path: place.path };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** The live dataset at the original path: a mount, never a symlink. */
export async function openLive(job: Job): Promise<DirRef> {
  const [live, root] = await Promise.all([openDir(job.path), openDir(job.root.rootdir)]);
  await root.close();
  if (live.dev === root.dev) {
    await live.close();
    throw new Error(`${quoteName(job.path)} is not a mounted filesystem; not copying into it`);
  }
  return live;
}
