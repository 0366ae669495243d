/**
 * Relative paths of a tree ('' the top, 'a/b' below it; lossless latin1 strings of the name
 * bytes): their parent and their last name. Local to the plugin (the API may offer them later).
 */

/** The parent of `rel` ('' for a name at the top). */
export function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

/** The last name of `rel`. */
export function nameOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}
