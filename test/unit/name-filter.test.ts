import { describe, expect, it } from 'vitest';
import { fromPython } from '../../plugins/name-filter/pyregex.js';

describe('Python regular expressions', () => {
  it('takes the original documentation example', () => {
    const re = fromPython('^\\d\\d\\d\\d\\d\\d_\\w\\d\\d\\d\\d\\d_\\d\\d\\d\\d_\\w\\w\\w\\w\\w\\w\\w\\w\\w\\w$');
    expect(re.test('140613_D00123_0001_AC123DEFXX')).toBe(true);
    expect(re.test('140613_D00123_0001_AC123DEFX')).toBe(false);
    expect(re.test('not-a-run')).toBe(false);
  });

  it('takes named groups, back references, \\A, \\Z and inline flags', () => {
    expect(fromPython('^(?P<y>\\d\\d)-(?P=y)$').test('14-14')).toBe(true);
    expect(fromPython('^(?P<y>\\d\\d)-(?P=y)$').test('14-15')).toBe(false);
    expect(fromPython('\\Arun\\Z').test('run')).toBe(true);
    expect(fromPython('\\Arun\\Z').test('run\n')).toBe(false);
    expect(fromPython('(?i)^RUN').test('run-1')).toBe(true);
  });

  it('keeps escaped parentheses and backslashes as they are', () => {
    // \( is a literal parenthesis, so "(?P<" after it is not a named group
    expect(fromPython('^a\\(?P<x>b\\)$').source).toBe('^a\\(?P<x>b\\)$');
    expect(fromPython('^a\\(?P<x>b\\)$').test('a(P<x>b)')).toBe(true);
    expect(fromPython('^a\\\\b$').test('a\\b')).toBe(true);
  });

  it('rejects an invalid pattern', () => {
    expect(() => fromPython('(unclosed')).toThrow();
  });
});
