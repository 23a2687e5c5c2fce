// The encodings of docs/proofs.md, sections 1 and 2: JSON with integers told apart from floats, lowercase
// hex, UTF-8, and the canonical MessagePack subset (encoding, and strict decoding that re-encodes).
//
// JSON values here: null, booleans, strings, arrays, plain objects; integers are numbers when safe and
// BigInts beyond 2^53; a number written with a fraction or exponent is a JsonFloat, never an integer.

export class JsonFloat {
  constructor(value) {
    this.value = value;
  }
}

/** JSON.parse keeping integers exact and floats apart (the reviver's source text: Chromium 114+). */
export function parseJson(text) {
  return JSON.parse(text, (key, value, context) => {
    if (typeof value !== "number") return value;
    const source = context && typeof context.source === "string" ? context.source : null;
    if (source === null) return Number.isInteger(value) ? value : new JsonFloat(value);
    if (/[.eE]/.test(source)) return new JsonFloat(value);
    return Number.isSafeInteger(value) ? value : BigInt(source);
  });
}

export const isInt = v => (typeof v === "number" && Number.isInteger(v)) || typeof v === "bigint";
const MAX_U64 = (1n << 64n) - 1n;
export const isUint = v => isInt(v) && BigInt(v) >= 0n && BigInt(v) <= MAX_U64;
export const isObject = v => v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof JsonFloat)
  && !(v instanceof Uint8Array);

/** Text that UTF-8 can encode (no unpaired surrogates). */
export function isText(v) {
  if (typeof v !== "string") return false;
  if (typeof v.isWellFormed === "function") return v.isWellFormed();
  return !/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(v);
}

/** Integers as the smallest exact JS type: numbers when safe, else BigInt. */
export const normInt = n => (typeof n === "bigint" && n >= -(2n ** 53n) + 1n && n <= 2n ** 53n - 1n ? Number(n) : n);

/** Equality of JSON values with their types: true is not 1, 1 is not 1.0, objects have the same names. */
export function jsonEqual(a, b) {
  if (isInt(a) || isInt(b)) return isInt(a) && isInt(b) && BigInt(a) === BigInt(b);
  if (a instanceof JsonFloat || b instanceof JsonFloat) {
    return a instanceof JsonFloat && b instanceof JsonFloat && a.value === b.value;
  }
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => jsonEqual(x, b[i]));
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every(k => Object.prototype.hasOwnProperty.call(b, k) && jsonEqual(a[k], b[k]));
}

// --- bytes ---------------------------------------------------------------------------------------------

export const utf8 = text => new TextEncoder().encode(text);

/** Strict UTF-8 decoding; null for invalid bytes. */
export function fromUtf8(bytes) {
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return null;
  }
}

export function toHex(bytes) {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Lowercase hex without separators (of `length` bytes if given) -> bytes; null otherwise. */
export function fromHex(text, length = null) {
  if (typeof text !== "string" || text.length % 2 || !/^[0-9a-f]*$/.test(text)) return null;
  if (length !== null && text.length !== length * 2) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let i = 0;
  for (const p of parts) {
    out.set(p, i);
    i += p.length;
  }
  return out;
}

export const bytesEqual = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// --- canonical MessagePack -----------------------------------------------------------------------------

/** Canonical bytes of a tree of null, booleans, integers, strings (text), Uint8Array (bytes) and arrays. */
export function pack(value) {
  const out = [];
  const u8 = n => out.push(n & 0xff);
  const be = (n, size) => {
    let v = BigInt.asUintN(size * 8, BigInt(n));
    const bytes = [];
    for (let i = 0; i < size; i++) {
      bytes.unshift(Number(v & 0xffn));
      v >>= 8n;
    }
    out.push(...bytes);
  };
  const put = v => {
    if (v === null) u8(0xc0);
    else if (v === false) u8(0xc2);
    else if (v === true) u8(0xc3);
    else if (isInt(v)) {
      const n = BigInt(v);
      if (n >= 0n) {
        if (n < 128n) u8(Number(n));
        else if (n < 256n) { u8(0xcc); be(n, 1); }
        else if (n < 65536n) { u8(0xcd); be(n, 2); }
        else if (n < 4294967296n) { u8(0xce); be(n, 4); }
        else if (n <= MAX_U64) { u8(0xcf); be(n, 8); }
        else throw new Error("integer too large");
      } else if (n >= -32n) u8(Number(n) & 0xff);
      else if (n >= -128n) { u8(0xd0); be(n, 1); }
      else if (n >= -32768n) { u8(0xd1); be(n, 2); }
      else if (n >= -2147483648n) { u8(0xd2); be(n, 4); }
      else if (n >= -(2n ** 63n)) { u8(0xd3); be(n, 8); }
      else throw new Error("integer too small");
    } else if (typeof v === "string") {
      if (!isText(v)) throw new Error("unpaired surrogate");
      const b = utf8(v);
      if (b.length < 32) u8(0xa0 | b.length);
      else if (b.length < 256) { u8(0xd9); be(b.length, 1); }
      else if (b.length < 65536) { u8(0xda); be(b.length, 2); }
      else { u8(0xdb); be(b.length, 4); }
      out.push(...b);
    } else if (v instanceof Uint8Array) {
      if (v.length < 256) { u8(0xc4); be(v.length, 1); }
      else if (v.length < 65536) { u8(0xc5); be(v.length, 2); }
      else { u8(0xc6); be(v.length, 4); }
      for (const x of v) out.push(x);
    } else if (Array.isArray(v)) {
      if (v.length < 16) u8(0x90 | v.length);
      else if (v.length < 65536) { u8(0xdc); be(v.length, 2); }
      else { u8(0xdd); be(v.length, 4); }
      v.forEach(put);
    } else throw new Error(`cannot encode ${typeof v}`);
  };
  put(value);
  return Uint8Array.from(out);
}

/** Decode MessagePack without maps, floats or extensions (strings strict UTF-8); throws on anything else,
 * trailing bytes included. Callers re-encode to check the input was canonical. */
export function unpack(bytes) {
  let i = 0;
  const need = n => {
    if (i + n > bytes.length) throw new Error("truncated");
  };
  const num = size => {
    need(size);
    let n = 0n;
    for (let k = 0; k < size; k++) n = (n << 8n) | BigInt(bytes[i++]);
    return n;
  };
  const signed = size => BigInt.asIntN(size * 8, num(size));
  const str = n => {
    need(n);
    const text = fromUtf8(bytes.subarray(i, i + n));
    if (text === null) throw new Error("invalid UTF-8");
    i += n;
    return text;
  };
  const bin = n => {
    need(n);
    const out = bytes.slice(i, i + n);
    i += n;
    return out;
  };
  const arr = n => {
    if (n > bytes.length - i) throw new Error("truncated"); // every item takes a byte at least
    return Array.from({ length: n }, () => get());
  };
  const get = () => {
    need(1);
    const t = bytes[i++];
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xcc: return normInt(num(1));
      case 0xcd: return normInt(num(2));
      case 0xce: return normInt(num(4));
      case 0xcf: return normInt(num(8));
      case 0xd0: return normInt(signed(1));
      case 0xd1: return normInt(signed(2));
      case 0xd2: return normInt(signed(4));
      case 0xd3: return normInt(signed(8));
      case 0xd9: return str(Number(num(1)));
      case 0xda: return str(Number(num(2)));
      case 0xdb: return str(Number(num(4)));
      case 0xc4: return bin(Number(num(1)));
      case 0xc5: return bin(Number(num(2)));
      case 0xc6: return bin(Number(num(4)));
      case 0xdc: return arr(Number(num(2)));
      case 0xdd: return arr(Number(num(4)));
      default: throw new Error(`type byte 0x${t.toString(16)} is not allowed`);
    }
  };
  const value = get();
  if (i !== bytes.length) throw new Error("trailing bytes");
  return value;
}
