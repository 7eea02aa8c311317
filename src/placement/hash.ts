import { createHash } from 'node:crypto';

/** Hash functions for placement: murmur3 (x86_32) for our own rings, md5 for tooz compatibility. */

const encoder = new TextEncoder();
// Reused for non-ASCII strings so hashing never allocates once the buffer is large enough.
let scratch = new Uint8Array(256);

/** UTF-8 bytes of `text` in a shared scratch buffer (valid until the next call); returns the byte length. */
function encodeScratch(text: string): number {
  if (scratch.length < text.length * 3) scratch = new Uint8Array(Math.max(text.length * 3, scratch.length * 2));
  return encoder.encodeInto(text, scratch).written;
}

/** murmur3's 32-bit finalizer: a bijective mixer with full avalanche. */
export function mix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** murmur3 x86_32 of the UTF-8 bytes of `key` (strings) or of the bytes themselves; an unsigned 32-bit integer. */
export function murmur3(key: string | Uint8Array, seed = 0): number {
  if (typeof key !== 'string') return murmur3Bytes(key, key.length, seed);
  const length = key.length;
  const blocks = length & ~3;
  let h = seed | 0;
  let i = 0;
  // ASCII fast path: char codes are the UTF-8 bytes.
  for (; i < blocks; i += 4) {
    const c0 = key.charCodeAt(i);
    const c1 = key.charCodeAt(i + 1);
    const c2 = key.charCodeAt(i + 2);
    const c3 = key.charCodeAt(i + 3);
    if ((c0 | c1 | c2 | c3) >= 0x80) return murmur3Bytes(scratch, encodeScratch(key), seed);
    let k = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = length & 3;
  if (tail !== 0) {
    const c0 = key.charCodeAt(i);
    const c1 = tail > 1 ? key.charCodeAt(i + 1) : 0;
    const c2 = tail > 2 ? key.charCodeAt(i + 2) : 0;
    if ((c0 | c1 | c2) >= 0x80) return murmur3Bytes(scratch, encodeScratch(key), seed);
    let k = c0 | (c1 << 8) | (c2 << 16);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  return mix32(h ^ length);
}

function murmur3Bytes(bytes: Uint8Array, length: number, seed: number): number {
  const blocks = length & ~3;
  let h = seed | 0;
  let i = 0;
  for (; i < blocks; i += 4) {
    let k = bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = length & 3;
  if (tail !== 0) {
    let k = bytes[i]!;
    if (tail > 1) k |= bytes[i + 1]! << 8;
    if (tail > 2) k |= bytes[i + 2]! << 16;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  return mix32(h ^ length);
}

// md5 per RFC 1321, in plain JS: a native crypto call costs ~1 µs, several times the hash of a short key.
const SHIFTS = new Uint8Array([7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21]);
const SINES = Int32Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) | 0);
const block = new Int32Array(16);
let md5Buffer = new Uint8Array(256);

function bswap(x: number): number {
  return ((x >>> 24) | ((x >>> 8) & 0xff00) | ((x << 8) & 0xff0000) | (x << 24)) >>> 0;
}

/**
 * md5 of the UTF-8 bytes of `key` (or of the bytes), written to `out` as four big-endian 32-bit words, so comparing
 * `out` word by word compares the digests as 128-bit integers (as tooz's int(hexdigest, 16) does).
 */
export function md5Words(key: string | Uint8Array, out: Uint32Array): void {
  let length: number;
  if (typeof key === 'string') {
    length = key.length;
    if (md5Buffer.length < length * 3 + 72) md5Buffer = new Uint8Array(Math.max(length * 3 + 72, md5Buffer.length * 2));
    let ascii = true;
    for (let i = 0; i < length; i++) {
      const c = key.charCodeAt(i);
      if (c >= 0x80) {
        ascii = false;
        break;
      }
      md5Buffer[i] = c;
    }
    if (!ascii) length = encoder.encodeInto(key, md5Buffer).written;
  } else {
    length = key.length;
    if (md5Buffer.length < length + 72) md5Buffer = new Uint8Array(Math.max(length + 72, md5Buffer.length * 2));
    md5Buffer.set(key);
  }
  const buf = md5Buffer;
  // Padding: 0x80, zeros, then the bit length as a little-endian 64-bit integer.
  const padded = ((length + 8) >>> 6) * 64 + 64;
  buf[length] = 0x80;
  buf.fill(0, length + 1, padded);
  const bits = length * 8;
  buf[padded - 8] = bits & 0xff;
  buf[padded - 7] = (bits >>> 8) & 0xff;
  buf[padded - 6] = (bits >>> 16) & 0xff;
  buf[padded - 5] = (bits >>> 24) & 0xff;
  const high = Math.floor(length / 0x20000000);
  buf[padded - 4] = high & 0xff;
  buf[padded - 3] = (high >>> 8) & 0xff;

  let a0 = 0x67452301;
  let b0 = 0xefcdab89 | 0;
  let c0 = 0x98badcfe | 0;
  let d0 = 0x10325476;
  for (let offset = 0; offset < padded; offset += 64) {
    for (let w = 0; w < 16; w++) {
      const p = offset + w * 4;
      block[w] = buf[p]! | (buf[p + 1]! << 8) | (buf[p + 2]! << 16) | (buf[p + 3]! << 24);
    }
    let a = a0;
    let b = b0;
    let c = c0;
    let d = d0;
    for (let i = 0; i < 64; i++) {
      let f: number;
      let g: number;
      if (i < 16) {
        f = (b & c) | (~b & d);
        g = i;
      } else if (i < 32) {
        f = (d & b) | (~d & c);
        g = (5 * i + 1) & 15;
      } else if (i < 48) {
        f = b ^ c ^ d;
        g = (3 * i + 5) & 15;
      } else {
        f = c ^ (b | ~d);
        g = (7 * i) & 15;
      }
      const x = (a + f + SINES[i]! + block[g]!) | 0;
      const s = SHIFTS[((i >>> 4) << 2) | (i & 3)]!;
      a = d;
      d = c;
      c = b;
      b = (b + ((x << s) | (x >>> (32 - s)))) | 0;
    }
    a0 = (a0 + a) | 0;
    b0 = (b0 + b) | 0;
    c0 = (c0 + c) | 0;
    d0 = (d0 + d) | 0;
  }
  out[0] = bswap(a0);
  out[1] = bswap(b0);
  out[2] = bswap(c0);
  out[3] = bswap(d0);
}

/**
 * tooz's node points: md5 seeded with the node's bytes, then updated with them again before each digest, so point r
 * is md5 of the bytes repeated r + 2 times. Incremental native hashing keeps this linear in the point count.
 * Returns `count` digests as consecutive big-endian word quadruples.
 */
export function md5Repeated(bytes: Uint8Array, count: number): Uint32Array {
  const out = new Uint32Array(count * 4);
  const hash = createHash('md5').update(bytes);
  for (let r = 0; r < count; r++) {
    hash.update(bytes);
    const digest = hash.copy().digest();
    out[r * 4] = digest.readUInt32BE(0);
    out[r * 4 + 1] = digest.readUInt32BE(4);
    out[r * 4 + 2] = digest.readUInt32BE(8);
    out[r * 4 + 3] = digest.readUInt32BE(12);
  }
  return out;
}
