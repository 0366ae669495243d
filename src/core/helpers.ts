/**
 * Helper directories: the hidden places a job keeps things in its root while it
 * runs (a staging mountpoint, the original moved aside). One naming rule for
 * everyone, so that sweeps, watchers and filters never take them for new work.
 */
import { createHash } from 'node:crypto';

export const HELPER_PREFIX = '.zfs-dynamic-creator-';

/** `<rootdir>/.zfs-dynamic-creator-<hash of name>.<kind>`: short whatever the name's length. */
export function helperPath(rootdir: string, name: string, kind: string): string {
  const tag = createHash('sha256').update(name).digest('hex').slice(0, 16);
  return `${rootdir}/${HELPER_PREFIX}${tag}.${kind}`;
}

export function isHelperName(name: string): boolean {
  return name.startsWith(HELPER_PREFIX);
}
