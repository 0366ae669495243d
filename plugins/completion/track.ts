/**
 * From a verdict to the run's record: complete and aborted are noted once; a run that is not
 * complete is waiting, or stalled once nothing was written to it for `staleAfterSeconds`, and
 * active again when it is written to after that. Each change is logged once (`runs.note` says
 * whether the record changed); looks that change nothing are silent.
 */
import type { DirRef, Logger, Runs } from '../../src/index.js';
import { lastWritten } from './look.js';
import { isoTime, judge, type Verdict } from './judge.js';
import type { Options, Rule } from './options.js';

/** What a look found: the run is complete or aborted, waiting, or stalled. */
export type Finding = { readonly kind: 'complete' | 'aborted' | 'waiting' | 'stalled'; readonly note: string };

export interface Tracker {
  readonly opts: Options;
  readonly rules: readonly Rule[];
  readonly policy: string;
  /** When each run (by path) was last seen written to: a look deeper than the directory itself is made at most once per stale period. */
  readonly seen: Map<string, number>;
}

export interface RunPlace {
  readonly runs: Runs;
  readonly log: Logger;
  readonly name: string;
  readonly path: string;
  readonly dir: DirRef;
}

/** When the run was last written to; `sure`: looked at every (capped) entry, not only the directory or the memory. */
async function writtenAt(t: Tracker, at: RunPlace, now: number, sure: boolean): Promise<number> {
  const staleMs = t.opts.staleAfterSeconds * 1000;
  const own = await at.dir.info();
  const cheap = Math.max(own.mtimeMs, own.ctimeMs, t.seen.get(at.path) ?? 0);
  if (!sure && now - cheap < staleMs) return cheap;
  const newest = Math.max(cheap, await lastWritten(at.dir));
  t.seen.set(at.path, newest);
  return newest;
}

/** Notes a complete or aborted run; logs it once. */
async function noteFinal(t: Tracker, at: RunPlace, verdict: Verdict & { at: string }, problems: string): Promise<Finding> {
  const kind = verdict.kind === 'aborted' ? 'aborted' : 'complete';
  const { changed } = await at.runs.note(at.name, { kind, at: verdict.at, note: verdict.note + problems, policy: t.policy });
  const fields = { dir: at.name, step: 'completion' };
  if (changed && kind === 'aborted') at.log.warn(`aborted: ${verdict.note}${problems}; converting it all the same`, fields);
  else if (changed) at.log.info(`complete: ${verdict.note}${problems}`, fields);
  t.seen.delete(at.path);
  return { kind, note: verdict.note };
}

/** Not complete: stalled (noted once, a WARNING), active again, or waiting. */
async function noteUnfinished(t: Tracker, at: RunPlace, note: string, troubled: boolean, now: number): Promise<Finding> {
  const fields = { dir: at.name, step: 'completion' };
  const stalledSince = (await at.runs.get(at.name))?.stalledSince;
  const written = await writtenAt(t, at, now, stalledSince !== undefined);
  if (stalledSince !== undefined && written > Date.parse(stalledSince)) {
    const { changed } = await at.runs.note(at.name, { kind: 'active', note: `written to again at ${isoTime(written, now)}` });
    if (changed) at.log.info(`active again: written to at ${isoTime(written, now)}`, fields);
  } else if (stalledSince !== undefined || now - written >= t.opts.staleAfterSeconds * 1000) {
    const since = isoTime(written, now);
    const text = `stalled: nothing written since ${since}, ${note}`;
    const { changed } = await at.runs.note(at.name, { kind: 'stalled', since, note: text, policy: t.policy });
    if (changed) at.log.warn(`${text}${t.opts.onStall === 'convert' ? '; converting it anyway (onStall: convert)' : ''}`, fields);
    return { kind: 'stalled', note: text };
  }
  const { changed } = await at.runs.note(at.name, { kind: 'waiting', note, policy: t.policy });
  if (changed && troubled) at.log.warn(note, fields);
  else if (changed) at.log.info(note, fields);
  return { kind: 'waiting', note };
}

/** The most of a verdict's note kept, and the problems named: a folder's owner can make hundreds of either. */
const NOTE_CAP = 400;
const PROBLEMS_NAMED = 3;
const clip = (text: string): string => (text.length > NOTE_CAP ? `${text.slice(0, NOTE_CAP)}…` : text);

/** One look at a run: its verdict noted (unfinished runs only when `unfinished`: the complete policy, or after the conversion). */
export async function lookAtRun(t: Tracker, at: RunPlace, unfinished: boolean): Promise<Finding> {
  const now = Date.now();
  const judged = await judge(at.dir, at.name, t.rules, t.opts.markerAgeSeconds * 1000, now);
  const { problems } = judged;
  const verdict = { ...judged.verdict, note: clip(judged.verdict.note) };
  const more = problems.length > PROBLEMS_NAMED ? ` (and ${problems.length - PROBLEMS_NAMED} more)` : '';
  const trouble = problems.length > 0 ? `; ${problems.slice(0, PROBLEMS_NAMED).map(clip).join('; ')}${more}` : '';
  if (verdict.kind !== 'waiting') return noteFinal(t, at, verdict, trouble);
  if (!unfinished) return { kind: 'waiting', note: verdict.note };
  return noteUnfinished(t, at, verdict.note + trouble, problems.length > 0, now);
}
