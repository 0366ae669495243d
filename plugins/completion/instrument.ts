/**
 * Which instrument wrote an Illumina run: from the folder's name
 * (YYMMDD_<instrument>_<run>_<A|B><flowcell>, NovaSeq X YYYYMMDD_…, TACA's RUN_RE_ILLUMINA), else
 * from RunInfo.xml's <Instrument> or RunParameters.xml's InstrumentName, InstrumentId or ScannerID
 * (arteria-runfolder's order). A small, tolerant extraction: no XML library, a bounded read.
 */
import type { DirRef } from '../../src/index.js';
import { readSmall } from './look.js';

const RUN_NAME = /^(?:\d{6}|\d{8})_([A-Za-z0-9-]+)_\d{2,}_[AB0]?[A-Za-z0-9-]+$/;

/** The instrument id in an Illumina run folder's name, or undefined. */
export function instrumentOfName(name: string): string | undefined {
  return RUN_NAME.exec(name)?.[1];
}

/** The longest element value taken (an instrument id such as LH00123, a status such as UserEndedEarly). */
export const VALUE_CAP = 64;

/**
 * The text of the first of `elements` in `xml` (one line of text, no markup), or undefined.
 * Attributes stop at the next "<" (no XML holds one there): one pass over a file of unclosed openings.
 * A value longer than VALUE_CAP is none (an id or a status is a word): it goes into notes, records, logs.
 */
export function xmlElement(xml: string, elements: readonly string[]): string | undefined {
  for (const element of elements) {
    const m = new RegExp(`<${element}(?:\\s[^<>]*)?>\\s*([^<\\s]{1,${VALUE_CAP}})\\s*</${element}>`).exec(xml);
    if (m) return m[1];
  }
  return undefined;
}

const FILES: readonly (readonly [string, readonly string[]])[] = [
  ['RunInfo.xml', ['Instrument']],
  ['RunParameters.xml', ['InstrumentName', 'InstrumentId', 'ScannerID']],
  ['runParameters.xml', ['InstrumentName', 'InstrumentId', 'ScannerID']],
];

/** The run's instrument id, and what did not read as it should on the way. */
export async function instrumentOf(dir: DirRef, name: string): Promise<{ instrument?: string; problems: string[] }> {
  const fromName = instrumentOfName(name);
  if (fromName !== undefined) return { instrument: fromName, problems: [] };
  const problems: string[] = [];
  for (const [file, elements] of FILES) {
    const read = await readSmall(dir, file);
    if (read === undefined) continue;
    if ('odd' in read) {
      problems.push(read.odd);
      continue;
    }
    const id = xmlElement(read.text, elements);
    if (id !== undefined) return { instrument: id, problems };
  }
  return { problems };
}
