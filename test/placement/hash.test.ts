import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { md5Repeated, md5Words, murmur3 } from '../../src/placement/hash.js';

fc.configureGlobal({ seed: 0x4a54, numRuns: 300 });

const utf8 = (s: string) => new TextEncoder().encode(s);

describe('murmur3 x86_32', () => {
  it.each([
    ['', 0, 0x00000000],
    ['', 1, 0x514e28b7],
    ['', 0xffffffff, 0x81f16f39],
    ['test', 0, 0xba6bd213],
    ['Hello, world!', 0, 0xc0363e43],
    ['Hello, world!', 1234, 0xfaf6cdb3],
    ['The quick brown fox jumps over the lazy dog', 0, 0x2e4ff723],
    ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
    ['aaaa', 0x9747b28c, 0x5a97808a],
    ['abc', 0, 0xb3dd93fa],
  ])('murmur3(%j, %d) = %d', (text, seed, expected) => {
    expect(murmur3(text, seed)).toBe(expected);
    expect(murmur3(utf8(text), seed)).toBe(expected);
  });

  it('hashes a string as its UTF-8 bytes, ASCII or not', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 30 }), fc.nat(), (s, seed) => {
        expect(murmur3(s, seed)).toBe(murmur3(utf8(s), seed));
      }),
    );
    expect(murmur3('naïve-ключ-键-😀')).toBe(murmur3(utf8('naïve-ключ-键-😀')));
  });
});

describe('md5', () => {
  const words = (digest: Buffer) => [0, 4, 8, 12].map((o) => digest.readUInt32BE(o));

  it('md5Words equals node:crypto for strings and bytes of any length', () => {
    const out = new Uint32Array(4);
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 200 }), fc.uint8Array({ maxLength: 300 })), (data) => {
        md5Words(data, out);
        expect([...out]).toEqual(words(createHash('md5').update(data).digest()));
      }),
    );
    for (const length of [55, 56, 63, 64, 65, 119, 120, 128, 1000]) {
      const data = new Uint8Array(length).fill(0x61);
      md5Words(data, out);
      expect([...out]).toEqual(words(createHash('md5').update(data).digest()));
    }
  });

  it('md5Repeated(b, n)[r] is md5 of b repeated r + 2 times, like tooz', () => {
    const bytes = utf8('nöde');
    const points = md5Repeated(bytes, 5);
    for (let r = 0; r < 5; r++) {
      const expected = words(
        createHash('md5')
          .update(Buffer.from('nöde'.repeat(r + 2)))
          .digest(),
      );
      expect([...points.subarray(r * 4, r * 4 + 4)]).toEqual(expected);
    }
  });
});
