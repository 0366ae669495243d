/**
 * Judging a run by its rules: which rule applies (by instrument), whether the run says it was
 * stopped (RunCompletionStatus.xml), and whether its markers are all there and old enough.
 */
import { openChild, type DirRef } from '../../src/index.js';
import { instrumentOf, xmlElement } from './instrument.js';
import { find, listSome, readSmall } from './look.js';
import type { Rule } from './options.js';
import { componentRegex } from './pattern.js';

export type Verdict =
  | { readonly kind: 'complete' | 'aborted'; readonly at: string; readonly note: string }
  | { readonly kind: 'waiting'; readonly note: string };

/** A verdict, and what was found wrong on the way (a marker that is a directory, a file that does not parse). */
export interface Judgement {
  readonly verdict: Verdict;
  readonly problems: readonly string[];
}

/** Whether the markers of a set are there and old enough, and what is missing. */
interface SetLook {
  readonly met: boolean;
  /** The newest marker's time (ms). */
  readonly at: number;
  readonly wanting: string[];
  readonly odd: string[];
}

const seconds = (ms: number): string => `${Math.round(ms / 1000)} s`;

/** A time read in the run's folder (its owner sets any mtime) as ISO 8601, held between 1970 and `now`: never a RangeError. */
export const isoTime = (ms: number, now: number): string => new Date(Math.min(Math.max(ms, 0), now)).toISOString();

async function lookSet(dir: DirRef, patterns: readonly string[], ageMs: number, now: number, prefix: string): Promise<SetLook> {
  const look: SetLook = { met: true, at: 0, wanting: [], odd: [] };
  let at = 0;
  for (const pattern of patterns) {
    const found = await find(dir, pattern);
    look.odd.push(...found.odd.map((o) => prefix + o));
    const newest = Math.max(0, ...found.files.map((f) => f.mtimeExactMs));
    if (found.files.length === 0) look.wanting.push(prefix + pattern);
    else if (now - newest < ageMs) look.wanting.push(`${prefix}${pattern} to be ${seconds(ageMs)} old`);
    at = Math.max(at, newest);
  }
  return { ...look, met: look.wanting.length === 0, at };
}

/** `all`, and one set of `any`, in one directory. */
async function lookRule(dir: DirRef, rule: Rule, ageMs: number, now: number, prefix = ''): Promise<SetLook> {
  const all = await lookSet(dir, rule.all, ageMs, now, prefix);
  if (rule.any.length === 0) return all;
  const sets = [];
  for (const set of rule.any) sets.push(await lookSet(dir, set, ageMs, now, prefix));
  const one = sets.find((s) => s.met);
  const odd = [...all.odd, ...sets.flatMap((s) => s.odd)];
  if (one) return { met: all.met, at: Math.max(all.at, one.at), wanting: all.wanting, odd };
  const either = sets.map((s) => s.wanting.join(' and ')).join(' or ');
  return { met: false, at: 0, wanting: [...all.wanting, either], odd };
}

/** Every directory matching `each` (a cell) must meet the rule; there must be one at least. */
async function lookCells(dir: DirRef, rule: Rule & { each: string }, ageMs: number, now: number): Promise<SetLook> {
  const re = componentRegex(rule.each);
  const looks: SetLook[] = [];
  for (const name of (await listSome(dir)).filter((n) => re.test(n)).sort()) {
    const cell = await openChild(dir, name).catch(() => undefined); // a file or link of that name is no cell
    if (!cell) continue;
    try {
      looks.push(await lookRule(cell, rule, ageMs, now, `${name}/`));
    } finally {
      await cell.close();
    }
  }
  const odd = looks.flatMap((l) => l.odd);
  if (looks.length === 0) return { met: false, at: 0, wanting: [`a cell directory (${rule.each})`], odd };
  const done = looks.filter((l) => l.met).length;
  const wanting =
    done < looks.length ? [`${looks.length - done} of ${looks.length} cell(s): ${looks.flatMap((l) => l.wanting).join(', ')}`] : [];
  return { met: done === looks.length, at: Math.max(...looks.map((l) => l.at)), wanting, odd };
}

/** The rule that judges this run: the first whose instrument matches (or that names none). */
async function ruleFor(
  dir: DirRef,
  name: string,
  rules: readonly Rule[],
): Promise<{ rule?: Rule; instrument?: string; problems: string[] }> {
  if (!rules.some((r) => r.instrument !== undefined)) return { rule: rules[0], problems: [] };
  const { instrument, problems } = await instrumentOf(dir, name);
  const rule = rules.find((r) => r.instrument === undefined || (instrument !== undefined && new RegExp(r.instrument).test(instrument)));
  return { ...(rule ? { rule } : {}), ...(instrument !== undefined ? { instrument } : {}), problems };
}

type Status = { ended?: string; at: number } | { problem: string } | undefined;

/** The run's RunCompletionStatus.xml: how it ended (undefined: CompletedAsPlanned), or what is wrong with it. */
async function statusOf(dir: DirRef, file: string): Promise<Status> {
  const read = await readSmall(dir, file);
  if (read === undefined) return undefined;
  if ('odd' in read) return { problem: read.odd };
  const status = xmlElement(read.text, ['CompletionStatus']);
  if (status === undefined) return { problem: `${file} does not parse (no CompletionStatus)` };
  return status === 'CompletedAsPlanned' ? { at: read.mtimeMs } : { ended: status, at: read.mtimeMs };
}

/** The verdict on one run, from a few lstat calls and bounded reads of its directory. */
export async function judge(dir: DirRef, name: string, rules: readonly Rule[], ageMs: number, now = Date.now()): Promise<Judgement> {
  const { rule, instrument, problems } = await ruleFor(dir, name, rules);
  const of = instrument !== undefined ? ` (instrument ${instrument})` : '';
  if (rule === undefined) return { verdict: { kind: 'waiting', note: `no rule applies to this run${of}` }, problems };
  const label = `${rule.name}${of}`;
  const status = rule.status === undefined ? undefined : await statusOf(dir, rule.status);
  if (status !== undefined && 'problem' in status) problems.push(status.problem);
  else if (status?.ended !== undefined) {
    if (now - status.at >= ageMs)
      return {
        verdict: { kind: 'aborted', at: isoTime(status.at, now), note: `${rule.status} says ${status.ended} (${label})` },
        problems,
      };
    return {
      verdict: { kind: 'waiting', note: `waiting for ${rule.status} (${status.ended}) to be ${seconds(ageMs)} old (${label})` },
      problems,
    };
  }
  const look =
    rule.each !== undefined ? await lookCells(dir, { ...rule, each: rule.each }, ageMs, now) : await lookRule(dir, rule, ageMs, now);
  problems.push(...look.odd);
  const markers = [...rule.all, ...rule.any.flat()].join(', ');
  if (look.met) return { verdict: { kind: 'complete', at: isoTime(look.at, now), note: `${markers} present (${label})` }, problems };
  return { verdict: { kind: 'waiting', note: `waiting for ${look.wanting.join(', ')} (${label})` }, problems };
}
