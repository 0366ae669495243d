/** Names as tests type them. */

/** An ordinary (UTF-8) JavaScript string to the latin1 form of a name or relative path (src/util/safefs/names.ts). */
export function relFromText(text: string): string {
  return Buffer.from(text, 'utf8').toString('latin1');
}
