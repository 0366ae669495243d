/**
 * Names and relative paths. Names are raw bytes, carried losslessly as JavaScript strings in
 * 'latin1' encoding (one character per byte: `Buffer.from(rel, 'latin1')` gives the bytes back);
 * `displayPath` decodes them as UTF-8 for messages. A relative path is names joined by '/', ''
 * for the top.
 */

/** A relative path or name (latin1 string) to its raw bytes. */
export function relToBuffer(rel: string): Buffer {
  if (/[\u0100-\uffff]/.test(rel)) throw new TypeError(`not a latin1 (raw byte) string: ${JSON.stringify(rel)}`);
  return Buffer.from(rel, 'latin1');
}

/** Raw bytes of a name or relative path to the latin1 string form used everywhere here. */
export function relFromBuffer(bytes: Buffer): string {
  return bytes.toString('latin1');
}

/** A latin1 relative path as text for messages (UTF-8 decoded; invalid bytes become U+FFFD). */
export function displayPath(rel: string): string {
  return Buffer.from(rel, 'latin1').toString('utf8');
}

/** `rel/name`, or `name` at the top. */
export function joinRel(rel: string, name: string): string {
  return rel === '' ? name : `${rel}/${name}`;
}

/** The components of a relative path ('' has none). */
export function splitRel(rel: string): string[] {
  return rel === '' ? [] : rel.split('/');
}

/** The relative path of `rel`'s parent ('' for a name at the top). */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/** The last component of a relative path. */
export function nameOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

/** Throws unless `name` is one path component (not empty, `.`, `..`, no slash or NUL) of raw bytes. */
export function checkName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new TypeError(`not a single path component: ${JSON.stringify(displayPath(name))}`);
  }
  if (/[\u0100-\uffff]/.test(name)) throw new TypeError(`not a latin1 (raw byte) name: ${JSON.stringify(name)}`);
}
