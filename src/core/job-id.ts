/** A job's id: the same for a name of a root in every run (the journal's, the refusals', the runs' file names). */
import { createHash } from 'node:crypto';

export function jobId(rootdir: string, name: string): string {
  return createHash('sha256').update(rootdir).update('\0').update(name).digest('hex').slice(0, 20);
}
