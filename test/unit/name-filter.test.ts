import { afterEach, describe, expect, it } from 'vitest';
import nameFilter from '../../plugins/name-filter/index.js';
import { fromPython } from '../../plugins/name-filter/pyregex.js';
import { testRoot, type TestRoot } from '../../src/testing.js';

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

describe('the name-filter plugin (through the test kit)', () => {
  let root: TestRoot | undefined;
  afterEach(async () => {
    await root?.dispose();
    root = undefined;
  });

  const verdict = async (options: Record<string, unknown>, name: string) => {
    await root?.dispose();
    root = await testRoot({ dirs: [name] });
    await root.use(nameFilter, options);
    return root.filter(await root.job(name));
  };

  it('takes a matching name, skips one that does not match, one excluded, and a hidden one unless told', async () => {
    const regex = '^\\d{6}_\\w\\d{5}_\\d{4}_\\w{10}$';
    expect(await verdict({ regex }, '140613_D00123_0001_AC123DEFXX')).toBeUndefined();
    expect(await verdict({ regex }, 'not-a-run')).toEqual({ skip: `name does not match ${regex}` });
    expect(await verdict({ exclude: '^scratch' }, 'scratch-1')).toEqual({ skip: 'name matches the exclusion ^scratch' });
    expect(await verdict({}, '.hidden')).toEqual({ skip: 'hidden name (starts with ".")' });
    expect(await verdict({ hidden: true }, '.hidden')).toBeUndefined();
  });

  it('refuses an invalid pattern in its options, naming it', async () => {
    root = await testRoot();
    await expect(root.use(nameFilter, { regex: '(unclosed' })).rejects.toThrow(/not a valid regular expression/);
    expect(await root.use(nameFilter, { regex: '^run' })).toEqual(['filter']);
  });
});
