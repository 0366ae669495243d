/**
 * What doctor (and check-config) asks of the completion plugin: the root's policy in one line,
 * and rules that can never be met (an empty set, an absolute path or "..", a marker that another
 * marker needs as a directory, an instrument pattern that is no regular expression).
 */
import type { DoctorCheck, DoctorContext } from '../../src/index.js';
import type { Options, Rule } from './options.js';
import { patternProblem, setProblem } from './pattern.js';
import { policyName } from './presets.js';

const NAME = 'completion';

/** The problems of one rule, each a sentence. */
export function ruleProblems(rule: Rule): string[] {
  const problems: string[] = [];
  const patterns = [
    ...rule.all,
    ...rule.any.flat(),
    ...(rule.each !== undefined ? [rule.each] : []),
    ...(rule.status !== undefined ? [rule.status] : []),
  ];
  for (const p of patterns) {
    const problem = patternProblem(p);
    if (problem !== undefined) problems.push(problem);
  }
  if (rule.all.length === 0 && rule.any.length === 0) problems.push('no marker at all: every run would be complete at once');
  const sets = rule.any.length > 0 ? rule.any.map((s) => [...rule.all, ...s]) : rule.all.length > 0 ? [rule.all] : [];
  for (const set of sets) {
    const problem = setProblem(set);
    if (problem !== undefined) problems.push(problem);
  }
  if (rule.each !== undefined && rule.each.includes('/'))
    problems.push(`each: ${rule.each} must be one component (a directory of the run)`);
  if (rule.status !== undefined && rule.status.includes('/'))
    problems.push(`status: ${rule.status} must be a file of the run's own directory`);
  if (rule.instrument !== undefined) {
    try {
      new RegExp(rule.instrument);
    } catch {
      problems.push(`instrument: ${rule.instrument} is not a regular expression`);
    }
  }
  return problems;
}

function summary(opts: Options, rules: readonly Rule[]): string {
  const stall = `stalled after ${opts.staleAfterSeconds} s without a write (then ${opts.onStall})`;
  if (opts.policy === 'quiet')
    return rules.length === 0
      ? 'policy quiet: nothing waits for markers and nothing is tracked'
      : `policy ${policyName(opts)}: converted at the first quiet window; completion tracked after (${rules.length} rule(s))`;
  return `policy ${policyName(opts)}: converted once complete (${rules.map((r) => r.name).join('; ')}), markers ${opts.markerAgeSeconds} s old, ${stall}; looked at every ${opts.recheckSeconds} s by the daemon (incron fires only at mkdir)`;
}

/** The doctor tap: this plugin's checks appended to `checks`. */
export function completionDoctor(checks: DoctorCheck[], doctor: DoctorContext, opts: Options, rules: readonly Rule[]): DoctorCheck[] {
  const name = `${doctor.label}.completion`;
  const found: DoctorCheck[] = [{ name, status: 'info', message: summary(opts, rules) }];
  rules.forEach((rule, i) => {
    const problems = ruleProblems(rule);
    if (problems.length > 0)
      found.push({
        name: `${name}.rules`,
        status: 'fail',
        message: `${doctor.optionAt(NAME, opts.rules ? ['rules', String(i)] : ['preset'])} (${rule.name}) can never be met: ${problems.join('; ')}; change the rule`,
      });
  });
  if (rules.length > 0 && rules.every((r) => r.instrument !== undefined))
    found.push({
      name: `${name}.rules`,
      status: 'warn',
      message: `${doctor.optionAt(NAME, ['rules'])}: every rule names an instrument; a run of any other waits until it stalls; add a last rule without instrument`,
    });
  return [...checks, ...found];
}
