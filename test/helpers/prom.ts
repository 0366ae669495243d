/**
 * A strict reader of the Prometheus text exposition format (0.0.4), for tests: every sample line
 * must belong to a family announced by HELP and TYPE lines before it, names and labels must be
 * well formed, values numbers, and no series may appear twice. Throws on the first violation.
 */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Family {
  readonly name: string;
  readonly type: string;
  readonly help: string;
  readonly samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`bad labels in ${JSON.stringify(line)}`);
    const key = text.slice(i, eq);
    if (!LABEL.test(key)) throw new Error(`bad label name ${JSON.stringify(key)} in ${JSON.stringify(line)}`);
    if (text[eq + 1] !== '"') throw new Error(`unquoted label value in ${JSON.stringify(line)}`);
    let value = '';
    let j = eq + 2;
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === '\\') {
        const next = text[++j];
        if (next === 'n') value += '\n';
        else if (next === '\\' || next === '"') value += next;
        else throw new Error(`bad escape in ${JSON.stringify(line)}`);
      } else if (text[j] === '\n') throw new Error(`raw newline in a label value in ${JSON.stringify(line)}`);
      else value += text[j];
    }
    if (j >= text.length) throw new Error(`unterminated label value in ${JSON.stringify(line)}`);
    if (key in labels) throw new Error(`label ${key} twice in ${JSON.stringify(line)}`);
    labels[key] = value;
    i = j + 1;
    if (text[i] === ',') i++;
    else if (i < text.length) throw new Error(`bad label separator in ${JSON.stringify(line)}`);
  }
  return labels;
}

/** The families of a .prom text, in order. */
export function parseExposition(text: string): Map<string, Family> {
  if (!text.endsWith('\n')) throw new Error('the text must end with a newline');
  const families = new Map<string, Family>();
  const series = new Set<string>();
  let current: { name: string; help?: string; type?: string } | undefined;
  for (const line of text.slice(0, -1).split('\n')) {
    if (line === '') throw new Error('an empty line');
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name, rest] = meta as unknown as [string, 'HELP' | 'TYPE', string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name ${name}`);
      if (families.has(name)) throw new Error(`family ${name} announced twice`);
      if (current?.name !== name) current = { name };
      if (kind === 'HELP') current.help = rest;
      else {
        if (!TYPES.has(rest)) throw new Error(`bad type ${rest} for ${name}`);
        current.type = rest;
      }
      if (current.help !== undefined && current.type !== undefined)
        families.set(name, { name, type: current.type, help: current.help, samples: [] });
      continue;
    }
    if (line.startsWith('#')) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!sample) throw new Error(`bad sample line ${JSON.stringify(line)}`);
    const [, name, labelText, valueText] = sample as unknown as [string, string, string | undefined, string];
    const value = valueText === '+Inf' ? Infinity : valueText === '-Inf' ? -Infinity : Number(valueText);
    if (valueText !== 'NaN' && Number.isNaN(value)) throw new Error(`bad value in ${JSON.stringify(line)}`);
    const family = [...families.values()].at(-1);
    const base =
      family && [family.name, `${family.name}_bucket`, `${family.name}_sum`, `${family.name}_count`].includes(name) ? family : undefined;
    if (!base) throw new Error(`sample ${name} outside its family (HELP and TYPE must come first)`);
    if (base.type !== 'histogram' && base.type !== 'summary' && name !== base.name)
      throw new Error(`sample ${name} in ${base.type} family ${base.name}`);
    const labels = labelText === undefined ? {} : parseLabels(labelText, line);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (series.has(key)) throw new Error(`series ${key} twice`);
    series.add(key);
    base.samples.push({ name, labels, value });
  }
  return families;
}

/** The value of one series, or undefined. */
export function sampleValue(families: Map<string, Family>, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const family of families.values()) {
    for (const s of family.samples) {
      if (
        s.name === name &&
        Object.keys(labels).every((k) => s.labels[k] === labels[k]) &&
        Object.keys(s.labels).length === Object.keys(labels).length
      )
        return s.value;
    }
  }
  return undefined;
}
