/**
 * Marker patterns: a path relative to the run, `/`-separated, each component a name or a simple
 * pattern (`*`, `?`, `[...]`, never across a `/`). What can never name a marker is told apart.
 */

/** Whether a component is a pattern (else a plain name, looked up with one lstat). */
export const isWild = (component: string): boolean => /[*?[]/.test(component);

const escape = (text: string): string => text.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
/** Inside `[...]`: ranges stay ranges. */
const escapeClass = (text: string): string => text.replace(/[\\\]^]/g, '\\$&');

/** The regular expression of one component. */
export function componentRegex(component: string): RegExp {
  let re = '';
  for (let i = 0; i < component.length; i++) {
    const ch = component[i]!;
    const end = ch === '[' ? component.indexOf(']', i + 2) : -1;
    if (ch === '*') re += '.*';
    else if (ch === '?') re += '.';
    else if (end > i) {
      const body = component.slice(i + 1, end);
      re += `[${body.startsWith('!') ? `^${escapeClass(body.slice(1))}` : escapeClass(body)}]`;
      i = end;
    } else re += escape(ch);
  }
  return new RegExp(`^${re}$`, 's');
}

export const splitPattern = (pattern: string): string[] => pattern.split('/');

/** Why a pattern can never name a marker in the run, or undefined. */
export function patternProblem(pattern: string): string | undefined {
  if (pattern.startsWith('/')) return `${pattern} is absolute: markers are relative to the run`;
  const parts = splitPattern(pattern);
  if (parts.some((p) => p === '')) return `${pattern} has an empty component`;
  if (parts.some((p) => p === '.' || p === '..')) return `${pattern} has "." or "..": markers are inside the run`;
  if (parts.some((p) => p.includes('\0'))) return `${pattern} holds a NUL byte`;
  return undefined;
}

/**
 * Why a set of patterns can never be met together, or undefined: a marker must be a file, so
 * no other pattern may need it as a directory (`a` and `a/b`).
 */
export function setProblem(patterns: readonly string[]): string | undefined {
  if (patterns.length === 0) return 'an empty set of markers';
  for (const a of patterns) {
    const inside = patterns.find((b) => b !== a && b.startsWith(`${a}/`) && !isWild(a));
    if (inside !== undefined) return `${a} must be a file, but ${inside} needs it to be a directory`;
  }
  return undefined;
}
