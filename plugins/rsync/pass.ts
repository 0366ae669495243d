/**
 * One catch-up pass over the original and the live dataset (the catch-up's and the seal's
 * refill): copy what the three-way rule (threeway.ts) says to copy, adopt what is already equal,
 * collect conflicts. A pass that copies nothing, finds no conflict and sees no change under way is
 * a full verification.
 */
import { TreeChangedError, VerifiedSet, displayPath, walkPair, type DirRef, type EntryInfo, type Job } from '../../src/index.js';
import { applyCopies, type Applied, type Copy } from './copies.js';
import type { Manifest } from './manifest.js';
import type { RsyncContext } from './options.js';
import { removalBegan } from './places.js';
import { decide, decideBelowGone, difference, metaOf, same, type Meta } from './threeway.js';

export interface PassResult {
  /** Entries copied from the original. */
  copied: number;
  bytes: number;
  /** Entries both sides changed differently (or unsupported late changes): the original must be kept. */
  conflicts: string[];
  /** The original changed while the pass ran: not a verification. */
  changing: boolean;
  entries: number;
}

/** What job.step gives for a pass in a dry run (never reached: the dry run returns before any pass). */
export const NO_PASS: PassResult = { copied: 0, bytes: 0, conflicts: [], changing: false, entries: 0 };

/**
 * A directory a removal locked (root's, 0700: see removeTree) before a crash, taken for its
 * baseline's owner and mode: only the removal makes a user's directory so. Half locked counts
 * (a crash between the chown and the chmod), and the removal is told the owner and mode to give
 * back should the directory stay.
 */
function unlocked(o: EntryInfo, b: Meta, verified: VerifiedSet | undefined): EntryInfo {
  const root = o.uid === (process.geteuid?.() ?? 0) && o.gid === (process.getegid?.() ?? 0);
  const locked = o.type === 'dir' && b.type === 'dir' && (root || o.mode === 0o700);
  if (!locked) return o;
  verified?.lockedBefore(o.ino, { uid: b.uid, gid: b.gid, mode: b.mode & 0o7777 });
  return { ...o, uid: b.uid, gid: b.gid, mode: b.mode };
}

/** What a pass's walk decided, entry by entry (the three-way rule). */
class Judge {
  readonly copies: Copy[] = [];
  readonly conflicts: string[] = [];
  readonly adopted: [string, Meta][] = [];
  readonly sameFiles: string[] = [];

  constructor(
    private readonly verifyContent: boolean,
    private readonly manifest: Manifest | undefined,
    /** Once a removal began: directories it locked are taken for their baseline's metadata. */
    private readonly resumed: boolean,
    private readonly verified: VerifiedSet | undefined,
  ) {}

  /** The three-way rule for one entry (o: the original's, b: the baseline, d: the dataset's). */
  entry(rel: string, o: EntryInfo, b: Meta | undefined, d: EntryInfo | undefined, alone: boolean): void {
    const where = displayPath(rel) || '/';
    if (this.resumed && b !== undefined) o = unlocked(o, b, this.verified);
    if (alone) {
      if (decideBelowGone(o, b) === 'conflict')
        this.conflicts.push(
          `${where}: changed in the original${b ? ` (${difference(b, o)})` : ' (new)'}, below a directory renamed, deleted or replaced in the dataset`,
        );
      return;
    }
    let decision = decide(o, b, d);
    if (decision === 'copy' && this.manifest === undefined) decision = 'conflict';
    if (decision === 'adopt') this.adopted.push([rel, metaOf(o)]);
    else if (decision === 'copy') this.copies.push({ rel, o, d });
    else if (decision === 'conflict') this.conflicts.push(this.conflict(where, o, b, d));
    if (!this.verifyContent || o.type !== 'file' || !d) return;
    if (decision === 'adopt') this.sameFiles.push(rel);
    else if (decision === 'keep' && b && d.size === b.size && Math.floor(d.mtimeMs) === Math.floor(b.mtimeMs)) this.sameFiles.push(rel);
  }

  private conflict(where: string, o: EntryInfo, b: Meta | undefined, d: EntryInfo | undefined): string {
    if (this.manifest === undefined) {
      return `${where}: differs (${d ? difference(metaOf(o), metaOf(d)) : 'missing from the dataset'}) and there is no record of what was copied to tell whose change it is`;
    }
    if (d && b && same(b, d) && d.type !== o.type)
      return `${where}: became a ${o.type} in the original; the ${d.type} in the dataset is never replaced by another type`;
    return `${where}: changed in the original${b ? ` (${difference(b, o)})` : ' (new)'} and in the dataset${d ? ` (${difference(b ?? o, d)})` : ' (deleted)'}`;
  }
}

/**
 * One pass (see the top of this file); `verified` then holds every entry it saw in the original
 * (what the removal may remove). The original's subtree below a directory the dataset renamed,
 * deleted or replaced is walked too: each entry changed there since the baseline is a conflict.
 * Once a removal began (and was interrupted), the directories it locked (root's, 0700) are taken
 * for their baseline's metadata, in every pass of a recover.
 */
export async function pass(
  ctx: RsyncContext,
  job: Job,
  original: DirRef,
  live: DirRef,
  manifest: Manifest | undefined,
  verified?: VerifiedSet,
): Promise<PassResult> {
  const judge = new Judge(ctx.options.verifyContent, manifest, removalBegan(job), verified);
  const { conflicts } = judge;
  let entries = 0;
  try {
    ({ entries } = await walkPair(
      original,
      live,
      (rel, o, d, alone) => {
        if (o === undefined) return;
        if (o.crossDevice) {
          conflicts.push(`${displayPath(rel) || '/'}: another filesystem is mounted there in the original`);
          return;
        }
        verified?.add(o);
        // The baseline is read from disk a directory at a time (then known without waiting).
        const b = manifest?.get(rel);
        if (b instanceof Promise) return b.then((m) => judge.entry(rel, o, m, d, alone === true));
        judge.entry(rel, o, b, d, alone === true);
      },
      { signal: job.signal, alone: true },
    ));
  } catch (error) {
    if (error instanceof TreeChangedError) return { copied: 0, bytes: 0, conflicts, changing: true, entries };
    throw error;
  }
  let applied: Applied = { copied: 0, bytes: 0, changes: [], changing: false };
  if (judge.copies.length > 0 || judge.sameFiles.length > 0)
    applied = await applyCopies(job, original, live, judge.copies, judge.sameFiles, conflicts);
  if (manifest !== undefined) await manifest.record([...judge.adopted, ...applied.changes]);
  return { copied: applied.copied, bytes: applied.bytes, conflicts, changing: applied.changing, entries };
}
