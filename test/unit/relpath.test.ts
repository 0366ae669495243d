/** Relative paths of the plugin API (src/util/safefs/names.ts): names joined by '/', '' for the top. */
import { describe, expect, it } from 'vitest';
import { joinRel, nameOf, parentOf, splitRel } from '../../src/index.js';

describe('relative paths', () => {
  it('take apart what joinRel puts together, at the top and below', () => {
    for (const [parent, name] of [
      ['', 'a'],
      ['a', 'b'],
      ['a/b', 'c d'],
      ['x', '\xff\xfe'],
    ] as const) {
      const rel = joinRel(parent, name);
      expect([parentOf(rel), nameOf(rel)]).toEqual([parent, name]);
      expect(splitRel(rel)).toEqual([...splitRel(parent), name]);
    }
    expect(splitRel('')).toEqual([]);
  });
});
