/**
 * How far V8 lets the heap grow between full collections.
 *
 * After each full (mark-compact) collection V8 sets the next one for when the old generation
 * reaches what survived times a growing factor, up to 4 when collecting is cheap, as it is here
 * (a few tens of MiB survive). The tree walks make garbage at a high rate (a stat result, an
 * entry record and a path per entry, some of it promoted out of the young generation while a
 * directory is being listed), so the process sat at up to four times its live data, which is
 * most of its peak RSS. With the factor at 1 + percent/100 the collector runs more often and the
 * peak follows the live data. This is not a limit: the heap still grows as far as live data needs
 * (up to Node's own maximum), so no tree is too large for it; it costs some collector time.
 *
 * V8 reads the flag at each collection, so setting it at run time takes effect; it is set when
 * the process starts its first tree walk (safefs/context.ts), so that loading the program, and a run that
 * only rejects a name, collect no more often than Node's default. An explicit
 * --heap-growing-percent on the command line (execArgv) wins.
 */
import { setFlagsFromString } from 'node:v8';

export const HEAP_GROWING_PERCENT = 25;

let applied = false;

export function boundHeapGrowth(percent = HEAP_GROWING_PERCENT): void {
  if (applied) return;
  applied = true;
  if (process.execArgv.some((a) => /^--heap[-_]growing[-_]percent\b/.test(a))) return;
  setFlagsFromString(`--heap-growing-percent=${Math.max(1, Math.floor(percent))}`);
}
