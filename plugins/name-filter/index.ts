/**
 * name-filter: which directory names are converted. A name that does not match
 * `regex` (or matches `exclude`) is skipped with a log line; hidden names
 * (starting with ".") are skipped unless `hidden` is true.
 * Patterns use Python syntax as in the original --only-dirs-matching, or JavaScript.
 */
import * as z from 'zod';
import { definePlugin } from '../../src/index.js';
import { fromPython } from './pyregex.js';

const NAME = 'name-filter';

const pattern = z.string().transform((source, ctx) => {
  try {
    return fromPython(source);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: `not a valid regular expression: ${(error as Error).message}` });
    return z.NEVER;
  }
});

const options = z
  .object({
    /** Only names matching this are converted (searched, so anchor it with ^…$). */
    regex: pattern.optional(),
    /** Names matching this are never converted. */
    exclude: pattern.optional(),
    /** Convert names that start with "." too. */
    hidden: z.boolean().default(false),
  })
  .strict();

export default definePlugin<z.infer<typeof options>>({
  name: NAME,
  description: 'skips directories whose names do not match',
  options,
  apply(hooks, { options: opts }) {
    hooks.filter.tap(NAME, (job) => {
      if (!opts.hidden && job.name.startsWith('.')) return { skip: 'hidden name (starts with ".")' };
      if (opts.regex && !opts.regex.test(job.name)) return { skip: `name does not match ${opts.regex.source}` };
      if (opts.exclude?.test(job.name)) return { skip: `name matches the exclusion ${opts.exclude.source}` };
      return undefined;
    });
  },
});
