// Ed25519 signature verification (RFC 8032) with libsodium's acceptance rules (docs/proofs.md, section 6):
// S below the group order, the public key canonical and not of small order, R not of small order, and the
// encoding of [S]B - [k]A equal to R. Through WebCrypto when the browser has Ed25519; otherwise through the
// BigInt fallback below, written for this project (verification only: no secrets, so constant time does
// not matter here).

import { sha512 } from "./sha2.js";

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;
const mod = (a, m = P) => ((a % m) + m) % m;

function pow(base, exp) {
  let result = 1n;
  let b = mod(base);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
    e >>= 1n;
  }
  return result;
}

const inv = a => pow(a, P - 2n);
const D = mod(-121665n * inv(121666n));
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

// Points in extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, xy = T/Z.
const IDENTITY = [0n, 1n, 1n, 0n];

function add([x1, y1, z1, t1], [x2, y2, z2, t2]) {
  const a = mod((y1 - x1) * (y2 - x2));
  const b = mod((y1 + x1) * (y2 + x2));
  const c = mod(2n * D * t1 * t2);
  const d = mod(2n * z1 * z2);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}

function multiply(point, scalar) {
  let result = IDENTITY;
  let addend = point;
  let k = scalar;
  while (k > 0n) {
    if (k & 1n) result = add(result, addend);
    addend = add(addend, addend);
    k >>= 1n;
  }
  return result;
}

function littleEndian(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

function encode([x, y, z]) {
  const zi = inv(z);
  const ax = mod(x * zi);
  let ay = mod(y * zi);
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(ay & 0xffn);
    ay >>= 8n;
  }
  if (ax & 1n) out[31] |= 0x80;
  return out;
}

/** The point a 32-byte encoding names, or null if it names none or is not canonical (y >= p). */
function decode(bytes) {
  const sign = bytes[31] >> 7;
  const copy = Uint8Array.from(bytes);
  copy[31] &= 0x7f;
  const y = littleEndian(copy);
  if (y >= P) return null;
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  let x = mod(u * pow(v, 3n) * pow(u * pow(v, 7n), (P - 5n) / 8n));
  if (mod(v * x * x) !== u) {
    if (mod(v * x * x) !== mod(-u)) return null;
    x = mod(x * SQRT_M1);
  }
  if (x === 0n && sign) return null;
  if (Number(x & 1n) !== sign) x = P - x;
  return [x, y, 1n, mod(x * y)];
}

function isIdentity([x, y, z]) {
  return mod(x) === 0n && mod(y - z) === 0n;
}

const hasSmallOrder = point => isIdentity(multiply(point, 8n));

const BASE = decode(Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 0x58 : 0x66)));

/** The fallback: true only if `signature` (64 bytes) is `publicKey`'s (32 bytes) signature of `message`. */
export function verifyFallback(publicKey, message, signature) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const s = littleEndian(signature.subarray(32));
  if (s >= L) return false;
  const a = decode(publicKey);
  const r = decode(signature.subarray(0, 32));
  if (a === null || r === null || hasSmallOrder(a) || hasSmallOrder(r)) return false;
  const hashed = new Uint8Array(64 + message.length);
  hashed.set(signature.subarray(0, 32));
  hashed.set(publicKey, 32);
  hashed.set(message, 64);
  const k = mod(littleEndian(sha512(hashed)), L);
  const [x, y, z, t] = multiply(a, k);
  const check = add(multiply(BASE, s), [mod(-x), y, z, mod(-t)]);
  const encoded = encode(check);
  return encoded.every((byte, i) => byte === signature[i]);
}

let webCrypto; // undefined: not probed yet; null: not available

/** Whether this browser verifies Ed25519 through WebCrypto (probed once with an RFC 8032 test vector). */
export async function hasWebCryptoEd25519() {
  if (webCrypto !== undefined) return webCrypto !== null;
  webCrypto = null;
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) return false;
  try {
    // RFC 8032, section 7.1, test 1: the empty message.
    const hex = s => Uint8Array.from(s.match(/../g), b => parseInt(b, 16));
    const pk = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    const sig = hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    const key = await subtle.importKey("raw", pk, { name: "Ed25519" }, false, ["verify"]);
    if (await subtle.verify({ name: "Ed25519" }, key, sig, new Uint8Array(0))) webCrypto = subtle;
  } catch {
    webCrypto = null;
  }
  return webCrypto !== null;
}

/** Verify with WebCrypto when the browser has Ed25519 (unless `fallback`), else with the fallback above.
 * The libsodium rules WebCrypto does not apply (S < L is applied by both) are applied first. */
export async function verifySignature(publicKey, message, signature, { fallback = false } = {}) {
  if (fallback || !(await hasWebCryptoEd25519())) return verifyFallback(publicKey, message, signature);
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  if (littleEndian(signature.subarray(32)) >= L) return false;
  const a = decode(publicKey);
  const r = decode(signature.subarray(0, 32));
  if (a === null || r === null || hasSmallOrder(a) || hasSmallOrder(r)) return false;
  try {
    const key = await webCrypto.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return await webCrypto.verify({ name: "Ed25519" }, key, signature, message);
  } catch {
    return false;
  }
}
