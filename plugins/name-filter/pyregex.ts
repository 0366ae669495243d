/**
 * Python regular expressions (as the original script documents them) in
 * JavaScript: named groups (?P<n>…), back references (?P=n), \A and \Z, and
 * leading inline flags such as (?i).
 */
export function fromPython(pattern: string): RegExp {
  let flags = '';
  let body = pattern;
  const inline = /^\(\?([aiLmsux]+)\)/.exec(body);
  if (inline) {
    body = body.slice(inline[0].length);
    for (const f of inline[1]!) {
      if (f === 'i' && !flags.includes('i')) flags += 'i';
      if (f === 'm' && !flags.includes('m')) flags += 'm';
      if (f === 's' && !flags.includes('s')) flags += 's';
      if (f === 'x') throw new Error('verbose (?x) patterns are not supported');
    }
  }
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === '\\' && i + 1 < body.length) {
      const n = body[i + 1]!;
      if (n === 'A') out += '^';
      else if (n === 'Z') out += '$(?![\\s\\S])';
      else out += c + n;
      i++;
      continue;
    }
    if (body.startsWith('(?P<', i)) {
      out += '(?<';
      i += 3;
      continue;
    }
    const backref = /^\(\?P=([A-Za-z_][A-Za-z0-9_]*)\)/.exec(body.slice(i));
    if (backref) {
      out += `\\k<${backref[1]}>`;
      i += backref[0].length - 1;
      continue;
    }
    out += c;
  }
  return new RegExp(out, flags);
}
