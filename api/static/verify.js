// LambTrace label verifier for the browser: the checks of docs/label-proof.md, in JS.
//
// The consumer page (GET /l/<label>) fetches the label's proof bundle from the node and
// verifies it here, so that what a consumer is shown rests on the chain's genesis (the
// fingerprint in the QR link), not on the server that answered.  Every hash is
// recomputed in this file: canonical msgpack (DESIGN §3) of the genesis, the header, the
// votes and the event envelopes; RFC 9162 inclusion of the leaves (one multiproof in
// formats v3 and v2, one path per leaf in the archived v1); the commit
// certificate (> 2/3 of the validators' power); every event signature, with keys whose
// enrolment is itself in the bundle; the label's story (one tag, carcass and label,
// an unbroken custody chain); and, in format v3, the label's path in the recall map
// that the header's state_root commits to (every recall of the label, its carcass and
// its lamb is in the bundle, or there is none).  It mirrors ledger/ (codec, hashing,
// merkle, recallmap, events, blocks, rules) and verify/; tests/test_consumer_page.py
// runs this module in Chromium against vectors computed by the Python side, and
// tests/test_recallmap_js.py runs its recall-map code in node, so the two stay in step.
//
// Workflow of verifyLabelBundle, step for step verify/label.py's (cheap structure first,
// attacker-sized work last, STYLE §4):
//   1. parse the untrusted JSON bundle into values with real bytes (a known format,
//      exact shapes, v3's recall proof included, v3's events as [index, leaf] pairs, its
//      hashes as one byte string each and its certificate without the height and block
//      the header gives; gaps must be empty);
//   2. anchor: the fingerprint (if any) is a prefix of genesis_hash, the genesis
//      document (v2/v3: fetched by the page from GET /v1/genesis and passed in, unless
//      the bundle embeds it; v1: embedded) hashes to genesis_hash; the header names
//      genesis's chain and validator set; a chain whose genesis sets params.state_root
//      to "recalls/v1" takes v3 bundles only and its headers carry state_root, any other
//      chain takes no v3 bundle and no state_root; the certificate names the header's
//      height and hash and known validators (sorted, each once) holding more than 2/3
//      of the power;
//   3. placement: ascending leaf indexes below log_size, the exact proof length (v2/v3:
//      one multiproof; v1: each RFC 9162 path), then the proof folded to the header's
//      log_root;
//   4. every leaf decodes as canonical msgpack into a well-formed signed event of this
//      chain, no two alike, dated between genesis and the checkpoint;
//   5. the story: label.issue -> lamb.slaughter -> lamb.tag -> tags.issue, custody
//      unbroken from the tagger to the plant, recalls of the lamb, carcass or label;
//      v3: the recall map holds exactly the chain of those recalls for the label (or
//      no entry when there are none) under the header's state_root;
//   6. membership from genesis and the bundle's enrolments, rotations, terminals and
//      revocations; 7. exactness: the bundle holds exactly what the story and its
//      signers need; each signer's role and key valid at the event's time;
//   8. signatures last: the precommits, then every event's (WebCrypto Ed25519, or the same
//      rules in JavaScript where WebCrypto lacks it, and ECDSA
//      P-256; SHA-256 throughout).
// Any failure throws VerificationError(code, message) with verify/errors.py's codes (and
// a few of the page's own: bad_fingerprint, fingerprint_mismatch, no_crypto, no_genesis).  Pure
// apart from WebCrypto: no network, no DOM, no clock.

export const FORMAT = "lambtrace-label-proof/v3"; // what the node serves: v2 + recalls
export const FORMAT_V2 = "lambtrace-label-proof/v2"; // chains without the recall map
export const FORMAT_V1 = "lambtrace-label-proof/v1"; // archived bundles
export const FORMATS = Object.freeze([FORMAT, FORMAT_V2, FORMAT_V1]);
export const RECALL_MAP = "recalls/v1"; // genesis params.state_root of chains with the recall map
export const TAGS = Object.freeze({
  event: "lambtrace/event/v1",
  header: "lambtrace/header/v1",
  vote: "lambtrace/vote/v1",
  key: "lambtrace/key/v1",
  genesis: "lambtrace/genesis/v1",
});
export const LIMITS = Object.freeze({
  maxEventBytes: 16 * 1024, // ledger/limits.py max_event_bytes
  maxDepth: 8, // max_depth
  maxStrChars: 512, // max_str_chars
  maxListItems: 1000, // max_list_items
  maxSigsPerEvent: 4, // max_sigs_per_event
  maxProofNodes: 64, // verify/label.py MAX_PROOF_HASHES
  maxEvents: 1024, // verify/label.py MAX_EVENTS (api/proofs.py ProofOptions.max_events)
  maxPrecommits: 1024, // ledger/blocks/certificate.py MAX_PRECOMMITS
  minFingerprintHex: 32, // ledger/genesis.py FINGERPRINT_HEX
});

export class VerificationError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "VerificationError";
    this.code = code;
  }
}

function fail(code, message) {
  throw new VerificationError(code, message);
}

// ------------------------------------------------------------------------- bytes

// Object.hasOwn is Safari 15.4 and Chrome 93: phones older than that still verify
const hasOwn = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

export function utf8(text) {
  return utf8Encoder.encode(text);
}

export function bytesToHex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

const HEX_RE = /^(?:[0-9a-f]{2})*$/;

/** Lowercase hex (as the API writes it) to bytes; `size` demands an exact length. */
export function hexToBytes(text, what = "bytes", size = null) {
  if (typeof text !== "string" || !HEX_RE.test(text)) fail("malformed", `${what} must be lowercase hex`);
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  if (size !== null && out.length !== size) fail("malformed", `${what} must be ${size} bytes`);
  return out;
}

export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function bytesToBigInt(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function bigIntToBytes(n, size) {
  const out = new Uint8Array(size);
  for (let i = size - 1; i >= 0; i--) {
    out[i] = Number(n & 0xffn);
    n >>= 8n;
  }
  return out;
}

function isMap(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Uint8Array);
}

function isInt(v) {
  return (typeof v === "number" && Number.isSafeInteger(v)) || typeof v === "bigint";
}

function hasExactly(obj, required, optional = []) {
  if (!isMap(obj)) return false;
  const keys = Object.keys(obj);
  for (const k of required) if (!hasOwn(obj, k)) return false;
  for (const k of keys) if (!required.includes(k) && !optional.includes(k)) return false;
  return true;
}

function codePoints(s) {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// --------------------------------------------------------------- canonical msgpack

const INT_MIN = -(2n ** 63n);
const INT_MAX = 2n ** 64n - 1n;

class Writer {
  constructor() {
    this.buf = new Uint8Array(256);
    this.len = 0;
  }
  room(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  byte(b) {
    this.room(1);
    this.buf[this.len++] = b;
  }
  bytes(b) {
    this.room(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
  }
  uint(n, size) {
    this.bytes(bigIntToBytes(BigInt(n), size));
  }
  result() {
    return this.buf.slice(0, this.len);
  }
}

function sortedKeys(obj) {
  return Object.keys(obj)
    .map((k) => [k, utf8(k)])
    .sort((a, b) => compareBytes(a[1], b[1]));
}

function writeInt(w, i) {
  if (i < INT_MIN || i > INT_MAX) throw new VerificationError("non_canonical", "integer out of range");
  if (i >= 0n) {
    if (i < 0x80n) w.byte(Number(i));
    else if (i < 0x100n) (w.byte(0xcc), w.uint(i, 1));
    else if (i < 0x10000n) (w.byte(0xcd), w.uint(i, 2));
    else if (i < 0x100000000n) (w.byte(0xce), w.uint(i, 4));
    else (w.byte(0xcf), w.uint(i, 8));
  } else if (i >= -0x20n) w.byte(Number(0x100n + i));
  else if (i >= -0x80n) (w.byte(0xd0), w.uint(0x100n + i, 1));
  else if (i >= -0x8000n) (w.byte(0xd1), w.uint(0x10000n + i, 2));
  else if (i >= -0x80000000n) (w.byte(0xd2), w.uint(0x100000000n + i, 4));
  else (w.byte(0xd3), w.uint(2n ** 64n + i, 8));
}

function writeLength(w, n, fix, fixLimit, codes) {
  // codes: [8-bit, 16-bit, 32-bit] header bytes (null where the family has none)
  if (fix !== null && n < fixLimit) w.byte(fix | n);
  else if (codes[0] !== null && n < 0x100) (w.byte(codes[0]), w.uint(n, 1));
  else if (n < 0x10000) (w.byte(codes[1]), w.uint(n, 2));
  else if (n < 0x100000000) (w.byte(codes[2]), w.uint(n, 4));
  else throw new VerificationError("non_canonical", "value too long");
}

function writeValue(w, v) {
  if (v === null) w.byte(0xc0);
  else if (v === false) w.byte(0xc2);
  else if (v === true) w.byte(0xc3);
  else if (typeof v === "number") {
    if (!Number.isSafeInteger(v)) throw new VerificationError("non_canonical", "floats are not allowed");
    writeInt(w, BigInt(v));
  } else if (typeof v === "bigint") writeInt(w, v);
  else if (typeof v === "string") {
    const b = utf8(v);
    writeLength(w, b.length, 0xa0, 32, [0xd9, 0xda, 0xdb]);
    w.bytes(b);
  } else if (v instanceof Uint8Array) {
    writeLength(w, v.length, null, 0, [0xc4, 0xc5, 0xc6]);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    writeLength(w, v.length, 0x90, 16, [null, 0xdc, 0xdd]);
    for (const x of v) writeValue(w, x);
  } else if (isMap(v)) {
    const keys = sortedKeys(v);
    writeLength(w, keys.length, 0x80, 16, [null, 0xde, 0xdf]);
    for (const [k, kb] of keys) {
      writeLength(w, kb.length, 0xa0, 32, [0xd9, 0xda, 0xdb]);
      w.bytes(kb);
      writeValue(w, v[k]);
    }
  } else throw new VerificationError("non_canonical", `cannot encode ${typeof v}`);
}

/** Canonical msgpack bytes of a value: null, booleans, integers (Number or BigInt),
 * strings, Uint8Array (bin), arrays, maps (plain objects; keys sorted by UTF-8 bytes). */
export function encode(value) {
  const w = new Writer();
  writeValue(w, value);
  return w.result();
}

class Reader {
  constructor(bytes, maxDepth) {
    this.b = bytes;
    this.p = 0;
    this.maxDepth = maxDepth;
  }
  take(n) {
    if (n > this.b.length - this.p) fail("malformed", "truncated msgpack");
    const out = this.b.subarray(this.p, this.p + n);
    this.p += n;
    return out;
  }
  uint(n) {
    return bytesToBigInt(this.take(n));
  }
  len(n) {
    return Number(this.uint(n));
  }
  left() {
    return this.b.length - this.p;
  }
}

function asNumber(i) {
  return i >= -(2n ** 53n) + 1n && i <= 2n ** 53n - 1n ? Number(i) : i;
}

function readStr(r, n) {
  try {
    return utf8Decoder.decode(r.take(n));
  } catch (e) {
    if (e instanceof VerificationError) throw e;
    fail("malformed", "a string is not valid UTF-8");
  }
}

function readArray(r, n, depth) {
  if (depth > r.maxDepth) fail("too_deep", `nesting deeper than ${r.maxDepth}`);
  if (n > r.left()) fail("malformed", "truncated msgpack");
  const out = [];
  for (let i = 0; i < n; i++) out.push(readValue(r, depth + 1));
  return out;
}

function readMap(r, n, depth) {
  if (depth > r.maxDepth) fail("too_deep", `nesting deeper than ${r.maxDepth}`);
  if (2 * n > r.left()) fail("malformed", "truncated msgpack");
  const out = Object.create(null);
  let prev = null;
  for (let i = 0; i < n; i++) {
    const key = readValue(r, depth + 1);
    if (typeof key !== "string") fail("malformed", "map keys must be strings");
    // strictly ascending UTF-8 bytes: canonical order, and no key twice
    const enc = utf8(key);
    if (prev !== null && compareBytes(prev, enc) >= 0) fail("non_canonical", "map keys are not in canonical order");
    prev = enc;
    out[key] = readValue(r, depth + 1);
  }
  return out;
}

function readValue(r, depth) {
  const t = r.take(1)[0];
  if (t <= 0x7f) return t;
  if (t >= 0xe0) return t - 0x100;
  if (t >= 0x80 && t <= 0x8f) return readMap(r, t & 0x0f, depth);
  if (t >= 0x90 && t <= 0x9f) return readArray(r, t & 0x0f, depth);
  if (t >= 0xa0 && t <= 0xbf) return readStr(r, t & 0x1f);
  switch (t) {
    case 0xc0:
      return null;
    case 0xc2:
      return false;
    case 0xc3:
      return true;
    case 0xc4:
      return r.take(r.len(1)).slice();
    case 0xc5:
      return r.take(r.len(2)).slice();
    case 0xc6:
      return r.take(r.len(4)).slice();
    case 0xca:
    case 0xcb:
      return fail("non_canonical", "floats are not allowed");
    case 0xcc:
      return asNumber(r.uint(1));
    case 0xcd:
      return asNumber(r.uint(2));
    case 0xce:
      return asNumber(r.uint(4));
    case 0xcf:
      return asNumber(r.uint(8));
    case 0xd0:
      return asNumber(BigInt.asIntN(8, r.uint(1)));
    case 0xd1:
      return asNumber(BigInt.asIntN(16, r.uint(2)));
    case 0xd2:
      return asNumber(BigInt.asIntN(32, r.uint(4)));
    case 0xd3:
      return asNumber(BigInt.asIntN(64, r.uint(8)));
    case 0xd9:
      return readStr(r, r.len(1));
    case 0xda:
      return readStr(r, r.len(2));
    case 0xdb:
      return readStr(r, r.len(4));
    case 0xdc:
      return readArray(r, r.len(2), depth);
    case 0xdd:
      return readArray(r, r.len(4), depth);
    case 0xde:
      return readMap(r, r.len(2), depth);
    case 0xdf:
      return readMap(r, r.len(4), depth);
    default:
      return fail("malformed", `msgpack type 0x${t.toString(16)} is not allowed`);
  }
}

/** Parse untrusted canonical msgpack (ledger.codec.decode): size first, then the
 * parse (depth, key order, UTF-8, no floats or ext types), then re-encode and refuse
 * any bytes that differ.  Maps come back as null-prototype objects. */
export function decode(bytes, { maxBytes = 16 * 1024 * 1024, maxDepth = LIMITS.maxDepth } = {}) {
  if (!(bytes instanceof Uint8Array)) fail("malformed", "expected bytes");
  if (bytes.length > maxBytes) fail("too_large", `${bytes.length} bytes exceed the limit of ${maxBytes}`);
  const r = new Reader(bytes, maxDepth);
  const value = readValue(r, 1);
  if (r.p !== bytes.length) fail("malformed", "trailing bytes after the value");
  if (!bytesEqual(encode(value), bytes)) fail("non_canonical", "bytes are not in canonical form");
  return value;
}

// ------------------------------------------------------------------------- hashing

export async function sha256(data) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
}

/** H(tag, data) = sha256(tag || 0x00 || data) (ledger/hashing.py). */
export async function H(tag, data) {
  return sha256(signingMessage(tag, data));
}

/** The bytes a signature covers: tag || 0x00 || data. */
export function signingMessage(tag, data) {
  return concat(utf8(tag), Uint8Array.of(0), data);
}

/** First 16 bytes of H(key tag, alg || 0x00 || public key), as hex. */
export async function keyId(alg, pub) {
  return bytesToHex((await H(TAGS.key, concat(utf8(alg), Uint8Array.of(0), pub))).subarray(0, 16));
}

// ------------------------------------------------------------------- RFC 9162 Merkle

export async function leafHash(data) {
  return sha256(concat(Uint8Array.of(0), data));
}

export async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

const MAX_TREE_SIZE = 2n ** 64n - 1n;

function bitLength(n) {
  return n === 0n ? 0 : n.toString(2).length;
}

function popCount(n) {
  let c = 0;
  for (const ch of n.toString(2)) if (ch === "1") c++;
  return c;
}

function checkIndex(index, size) {
  if (!isInt(index) || !isInt(size)) fail("bad_proof", "index and size must be integers");
  const i = BigInt(index);
  const n = BigInt(size);
  if (n < 0n || n > MAX_TREE_SIZE) fail("bad_proof", `tree size ${size} is out of range`);
  if (i < 0n || i >= n) fail("bad_proof", `index ${index} is not below the tree size ${size}`);
  return [i, n];
}

function inclusionShape(i, n) {
  const inner = bitLength(i ^ (n - 1n));
  return [inner, popCount(i >> BigInt(inner))];
}

/** The exact number of hashes in the inclusion proof of leaf `index` in `size` leaves. */
export function inclusionProofLength(index, size) {
  const [i, n] = checkIndex(index, size);
  const [inner, border] = inclusionShape(i, n);
  return inner + border;
}

/** The root that `proof` implies for leaf `index` (hash `leaf`) in a tree of `size`
 * leaves (RFC 9162 §2.1.3.2); structure is checked before any hashing. */
export async function rootFromInclusionProof(leaf, index, size, proof) {
  const [i, n] = checkIndex(index, size);
  if (!(leaf instanceof Uint8Array) || leaf.length !== 32) fail("bad_proof", "a leaf hash is 32 bytes");
  if (!Array.isArray(proof)) fail("bad_proof", "a proof is a list of hashes");
  const [inner, border] = inclusionShape(i, n);
  if (proof.length !== inner + border) {
    fail("bad_proof", `the proof has ${proof.length} hashes; leaf ${index} of ${size} needs ${inner + border}`);
  }
  for (const p of proof) if (!(p instanceof Uint8Array) || p.length !== 32) fail("bad_proof", "proof hashes are 32 bytes");
  let h = leaf;
  for (let k = 0; k < inner; k++) {
    h = (i >> BigInt(k)) & 1n ? await nodeHash(proof[k], h) : await nodeHash(h, proof[k]);
  }
  for (let k = inner; k < inner + border; k++) h = await nodeHash(proof[k], h);
  return h;
}

// A multiproof (ledger/merkle.py): over the RFC 9162 tree shape, root(lo, hi) is the
// next proof hash if no proven leaf lies in [lo, hi), the leaf hash if hi - lo == 1,
// else node_hash(root(lo, lo + k), root(lo + k, hi)) with k the largest power of two
// below hi - lo; evaluated left to right from root(0, size), consuming every proof
// hash exactly once.  Indexes and sizes here are safe integers (JSON numbers).

function largestPowerOfTwoBelow(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function checkMultiIndexes(indexes, size) {
  if (!Number.isSafeInteger(size) || size < 0) fail("bad_proof", `tree size ${size} is out of range`);
  if (!Array.isArray(indexes) || indexes.length === 0) fail("bad_proof", "a multiproof proves at least one leaf");
  let prev = -1;
  for (const i of indexes) {
    if (!Number.isSafeInteger(i) || i < 0) fail("bad_proof", "multiproof indexes must be non-negative integers");
    if (i <= prev) fail("bad_proof", "multiproof indexes must be strictly ascending");
    if (i >= size) fail("bad_proof", `index ${i} is not below the tree size ${size}`);
    prev = i;
  }
}

function multiWalk(indexes, size, visit) {
  const walk = (lo, hi, a, b) => {
    if (a === b) return visit.empty(lo, hi);
    if (hi - lo === 1) return visit.leaf(a);
    const mid = lo + largestPowerOfTwoBelow(hi - lo);
    let m = a;
    while (m < b && indexes[m] < mid) m++;
    return visit.node(() => walk(lo, mid, a, m), () => walk(mid, hi, m, b));
  };
  return walk(0, size, 0, indexes.length);
}

/** The exact number of hashes in the multiproof of `indexes` (ascending) in `size` leaves. */
export function multiproofLength(indexes, size) {
  checkMultiIndexes(indexes, size);
  let count = 0;
  multiWalk(indexes, size, {
    empty: () => {
      count++;
    },
    leaf: () => {},
    node: (left, right) => {
      left();
      right();
    },
  });
  return count;
}

/** The root that the multiproof `proof` implies for `leaves` ([{index, hash}], ascending
 * by index) in a tree of `size` leaves; structure is checked before any hashing. */
export async function rootFromMultiproof(leaves, size, proof) {
  if (!Array.isArray(leaves)) fail("bad_proof", "leaves are a list");
  const indexes = leaves.map((l) => l.index);
  checkMultiIndexes(indexes, size);
  for (const l of leaves) if (!(l.hash instanceof Uint8Array) || l.hash.length !== 32) fail("bad_proof", "a leaf hash is 32 bytes");
  if (!Array.isArray(proof)) fail("bad_proof", "a proof is a list of hashes");
  const want = multiproofLength(indexes, size);
  if (proof.length !== want) fail("bad_proof", `the multiproof has ${proof.length} hashes; these leaves need ${want}`);
  for (const p of proof) if (!(p instanceof Uint8Array) || p.length !== 32) fail("bad_proof", "proof hashes are 32 bytes");
  let pos = 0;
  return multiWalk(indexes, size, {
    empty: async () => proof[pos++],
    leaf: async (a) => leaves[a].hash,
    node: async (left, right) => {
      const l = await left();
      return nodeHash(l, await right());
    },
  });
}

export async function verifyInclusion(leaf, index, size, proof, root) {
  const calculated = await rootFromInclusionProof(leaf, index, size, proof);
  if (!bytesEqual(calculated, root)) fail("root_mismatch", `leaf ${index}: the proof leads to another log root`);
}

// ------------------------------------------------------------------- the recall map
//
// A sparse Merkle map from each recalled label to a hash chain over the recall events
// that touch it (ledger/recallmap.py; docs/label-proof.md, "The recall map"); on chains
// whose genesis sets params.state_root to "recalls/v1" every header's state_root is its
// root, and a v3 bundle carries the label's path in it:
//   key(label) = SHA-256("lambtrace/recall-key/v1" || utf8(label)), 256 bits MSB first
//   chain      = c_n; c_0 = 32 zero bytes, c_i = SHA-256(0x02 || c_(i-1) || leaf_hash(leaf i))
//   leaf(K, V) = SHA-256(0x00 || K || V), node(L, R) = SHA-256(0x01 || L || R), EMPTY = 32 zeros

const STATE_ROOT_KINDS = Object.freeze([RECALL_MAP]); // ledger/genesis.py STATE_ROOT_KINDS
const RECALL_KEY_TAG = "lambtrace/recall-key/v1";
const RECALL_MAX_DEPTH = 256;
const EMPTY_NODE = new Uint8Array(32);

/** The 256-bit path of `label` in the recall map (ledger.recallmap.key_of). */
export async function recallKey(label) {
  return sha256(concat(utf8(RECALL_KEY_TAG), utf8(label)));
}

/** The chain value of a label recalled by the events with these log leaves (in log
 * order), or null for none (ledger.recallmap.chain_of). */
export async function recallChain(leaves) {
  let value = null;
  for (const leaf of leaves) value = await sha256(concat(Uint8Array.of(2), value ?? EMPTY_NODE, await leafHash(leaf)));
  return value;
}

/** 32-byte hashes sent one after another in one byte string (v3), as a list. */
function splitHashes(bytes) {
  const out = [];
  for (let i = 0; i < bytes.length; i += 32) out.push(bytes.slice(i, i + 32));
  return out;
}

function keyBit(bytes, i) {
  return (bytes[i >> 3] >> (7 - (i & 7))) & 1;
}

/** A bundle's `recalls` (JSON, bytes as hex) as {depth, mask, siblings, other: null |
 * [key, value]} (ledger.recallmap.proof_from_value); any other shape is malformed_bundle. */
export function recallProofFromJson(j) {
  if (!hasExactly(j, ["depth", "mask", "siblings", "other"])) {
    fail("malformed_bundle", "the recall proof must have exactly depth, mask, siblings and other");
  }
  try {
    const depth = j.depth;
    if (typeof depth !== "number" || !Number.isSafeInteger(depth) || depth < 0 || depth > RECALL_MAX_DEPTH) {
      fail("malformed_bundle", `the recall proof's depth must be an integer from 0 to ${RECALL_MAX_DEPTH}`);
    }
    const mask = hexToBytes(j.mask, "the recall proof's mask");
    if (mask.length !== (depth + 7) >> 3) fail("malformed_bundle", "the recall proof's mask must be (depth + 7) // 8 bytes");
    const sibs = hexToBytes(j.siblings, "the recall proof's siblings");
    if (sibs.length % 32 || sibs.length > RECALL_MAX_DEPTH * 32) {
      fail("malformed_bundle", "the recall proof's siblings must be 32-byte hashes, one after another");
    }
    const other = hexToBytes(j.other, "the recall proof's other");
    if (other.length !== 0 && other.length !== 64) {
      fail("malformed_bundle", "the recall proof's other must be empty or a key and a value, 32 bytes each");
    }
    return { depth, mask, siblings: splitHashes(sibs), other: other.length ? [other.slice(0, 32), other.slice(32)] : null };
  } catch (e) {
    if (e instanceof VerificationError && e.code === "malformed") fail("malformed_bundle", e.message);
    throw e;
  }
}

/** Check that the recall map with `root` holds `label` with the chain `value` (or, with
 * `value` null, no entry for it), by the path `proof` (recallProofFromJson), as
 * docs/label-proof.md "The recall map" steps 1-4 and ledger.recallmap.check_proof do:
 * the one canonical proof verifies, any other fails with recalls_not_proven. */
export async function checkRecallProof(proof, label, value, root) {
  const bad = (why) => fail("recalls_not_proven", `the recall proof ${why}`);
  const { depth, mask, siblings, other } = proof;
  // 1. canonical shape: no mask bit past depth, a sibling per set bit, none EMPTY, and
  //    the path ends at its last non-empty sibling
  for (let i = depth; i < 8 * mask.length; i++) if (keyBit(mask, i)) bad("has mask bits set past its depth");
  let set = 0;
  for (let i = 0; i < depth; i++) set += keyBit(mask, i);
  if (set !== siblings.length) bad("lists another number of siblings than its mask says");
  if (siblings.some((s) => bytesEqual(s, EMPTY_NODE))) bad("lists an empty sibling");
  if (depth > 0 && !keyBit(mask, depth - 1)) bad("goes below the last non-empty sibling");
  // 2. the bottom node: this label's entry, another label's entry on its path, or EMPTY
  const key = await recallKey(label);
  let node;
  if (value !== null) {
    if (other !== null) bad("shows another label's entry where this label's should be");
    node = await sha256(concat(Uint8Array.of(0), key, value));
  } else if (other !== null) {
    const [okey, ovalue] = other;
    if (bytesEqual(okey, key)) bad("shows an entry for this label, but the bundle has no recall of it");
    for (let i = 0; i < depth; i++) if (keyBit(okey, i) !== keyBit(key, i)) bad("shows an entry that is not on this label's path");
    node = await sha256(concat(Uint8Array.of(0), okey, ovalue));
  } else node = EMPTY_NODE;
  // 3. hash up, siblings taken from the end; 4. to the header's state_root
  let k = siblings.length;
  for (let i = depth - 1; i >= 0; i--) {
    const s = keyBit(mask, i) ? siblings[--k] : EMPTY_NODE;
    node = keyBit(key, i) ? await nodeHash(s, node) : await nodeHash(node, s);
  }
  if (!bytesEqual(node, root)) bad("does not lead to the checkpoint's state_root");
}

// --------------------------------------------------------------------- signatures

const P256 = {
  p: 0xffffffff00000001000000000000000000000000ffffffffffffffffffffffffn,
  b: 0x5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604bn,
  n: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
};
const ED25519_P = 2n ** 255n - 19n;
const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n;
// Encodings of the small-order points (libsodium's blocklist; the sign bit is ignored).
const ED25519_SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
].map((h) => hexToBytes(h));

function modPow(base, exp, mod) {
  let result = 1n;
  base %= mod;
  while (exp > 0n) {
    if (exp & 1n) result = (result * base) % mod;
    base = (base * base) % mod;
    exp >>= 1n;
  }
  return result;
}

/** The uncompressed SEC1 point (65 bytes) of a compressed P-256 public key (33 bytes):
 * y² = x³ − 3x + b (mod p), y = rhs^((p+1)/4) since p ≡ 3 (mod 4).  Throws unless the
 * key is a point on the curve. */
export function decompressP256(pub) {
  if (!(pub instanceof Uint8Array) || pub.length !== 33 || (pub[0] !== 2 && pub[0] !== 3)) {
    fail("bad_key", "not a SEC1 compressed P-256 point");
  }
  const { p, b } = P256;
  const x = bytesToBigInt(pub.subarray(1));
  if (x >= p) fail("bad_key", "P-256 x is not below the field prime");
  const rhs = (((x * x * x - 3n * x + b) % p) + p) % p;
  let y = modPow(rhs, (p + 1n) / 4n, p);
  if ((y * y) % p !== rhs) fail("bad_key", "not a point on P-256");
  if ((y & 1n) !== BigInt(pub[0] & 1)) y = p - y;
  return concat(Uint8Array.of(4), bigIntToBytes(x, 32), bigIntToBytes(y, 32));
}

function ed25519SmallOrder(enc) {
  return ED25519_SMALL_ORDER.some((bad) => {
    let diff = 0;
    for (let i = 0; i < 31; i++) diff |= enc[i] ^ bad[i];
    return (diff | ((enc[31] & 0x7f) ^ bad[31])) === 0;
  });
}

function littleEndian(bytes) {
  return bytesToBigInt(Uint8Array.from(bytes).reverse());
}

/** Whether a 32-byte Ed25519 encoding is canonical (y < p) and not of small order. */
export function ed25519KeyOk(pub) {
  if (!(pub instanceof Uint8Array) || pub.length !== 32) return false;
  const y = littleEndian(pub) & (2n ** 255n - 1n);
  return y < ED25519_P && !ed25519SmallOrder(pub);
}

const keyCache = new Map();

async function importKey(alg, pub) {
  const id = `${alg}:${bytesToHex(pub)}`;
  if (!keyCache.has(id)) {
    const p =
      alg === "ed25519"
        ? crypto.subtle.importKey("raw", pub, { name: "Ed25519" }, false, ["verify"])
        : crypto.subtle.importKey("raw", decompressP256(pub), { name: "ECDSA", namedCurve: "P-256" }, false, [
            "verify",
          ]);
    keyCache.set(id, p);
    p.catch(() => keyCache.delete(id));
  }
  return keyCache.get(id);
}

/** Whether WebCrypto here can verify Ed25519 (Chromium 137+, Firefox 129+, Safari 17+). */
export async function ed25519Available() {
  try {
    // the Ed25519 base point: a valid public key
    const base = hexToBytes("5866666666666666666666666666666666666666666666666666666666666666");
    await crypto.subtle.importKey("raw", base, { name: "Ed25519" }, false, ["verify"]);
    return true;
  } catch {
    return false;
  }
}

// Ed25519 without WebCrypto's: the curve arithmetic of @noble/ed25519 (vendor/, a verbatim
// copy of the npm package, loaded only when needed) under libsodium's acceptance rules,
// which ledger/sigs.py uses everywhere else (docs/adr/0016): the checks verifySignature
// makes first (canonical key and R encodings, neither of small order, S < L), then the
// cofactorless equation: [S]B - [h]A must encode to exactly R's 32 bytes, h being
// SHA-512(R || A || message) mod L.  (The library's own verify uses the cofactored
// equation, which accepts some signatures libsodium refuses.)
let nobleEd25519 = null;

function noble() {
  if (nobleEd25519 === null) {
    nobleEd25519 = import("./vendor/noble-ed25519.js");
    nobleEd25519.catch(() => {
      nobleEd25519 = null;
    });
  }
  return nobleEd25519;
}

async function ed25519Js(pub, message, sig) {
  const { Point } = await noble();
  const A = Point.fromBytes(pub, false);
  const r = sig.subarray(0, 32);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", concat(r, pub, message)));
  const h = littleEndian(digest) % ED25519_L;
  const S = littleEndian(sig.subarray(32));
  const check = Point.BASE.multiply(S, false).subtract(A.multiply(h, false));
  return bytesEqual(check.toBytes(), r);
}

const RFC8032_TEST1 = {
  pub: "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
  sig:
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
};

/** Whether Ed25519 can be checked in JavaScript here (the library loads, and it verifies
 * RFC 8032's first test vector and refuses it with one bit flipped). */
export async function ed25519JsAvailable() {
  try {
    const pub = hexToBytes(RFC8032_TEST1.pub);
    const sig = hexToBytes(RFC8032_TEST1.sig);
    const flipped = Uint8Array.from(sig);
    flipped[40] ^= 1;
    const empty = new Uint8Array();
    return (await verifySignature("ed25519", pub, empty, sig, "js")) &&
      !(await verifySignature("ed25519", pub, empty, flipped, "js"));
  } catch {
    return false;
  }
}

/** Whether `sig` is a valid `alg` signature by `pub` over `message` (ledger/sigs.py).
 * Never throws for bad input: it answers false.  ecdsa-p256: 33-byte compressed key,
 * raw r||s with 1 <= r < n and 1 <= s <= n/2 (low-S), over SHA-256 of the message.
 * ed25519: 32-byte canonical key not of small order, R not of small order, S < L, then
 * WebCrypto's Ed25519 (`ed25519` "webcrypto") or the same equation in JavaScript ("js"). */
export async function verifySignature(alg, pub, message, sig, ed25519 = "webcrypto") {
  try {
    if (!(pub instanceof Uint8Array) || !(sig instanceof Uint8Array) || sig.length !== 64) return false;
    if (alg === "ecdsa-p256") {
      if (pub.length !== 33) return false;
      const r = bytesToBigInt(sig.subarray(0, 32));
      const s = bytesToBigInt(sig.subarray(32));
      if (!(r >= 1n && r < P256.n && s >= 1n && s <= P256.n / 2n)) return false;
      const key = await importKey(alg, pub);
      return await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, sig, message);
    }
    if (alg === "ed25519") {
      if (!ed25519KeyOk(pub) || ed25519SmallOrder(sig.subarray(0, 32))) return false;
      if (littleEndian(sig.subarray(32)) >= ED25519_L) return false;
      if (ed25519 === "js") return await ed25519Js(pub, message, sig);
      const key = await importKey(alg, pub);
      return await crypto.subtle.verify({ name: "Ed25519" }, key, sig, message);
    }
    return false;
  } catch {
    return false;
  }
}

// ------------------------------------------------------- event schema (ledger/events.py)

export const COUNTIES = Object.freeze({
  152500: "锡林郭勒盟",
  152501: "二连浩特市",
  152502: "锡林浩特市",
  152522: "阿巴嘎旗",
  152523: "苏尼特左旗",
  152524: "苏尼特右旗",
  152525: "东乌珠穆沁旗",
  152526: "西乌珠穆沁旗",
  152527: "太仆寺旗",
  152528: "镶黄旗",
  152529: "正镶白旗",
  152530: "正蓝旗",
  152531: "多伦县",
});
const ROLES = ["trace_office", "banner_office", "cooperative", "herder_agent", "plant", "regulator"];
const KEY_SIZES = { ed25519: 32, "ecdsa-p256": 33 };
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TAG_RE = /^3[0-9]{14}$/;
const CHIP_RE = /^156[0-9]{12}$/;
const DATE_RE = /^([0-9]{4})-([0-9]{2})-([0-9]{2})$/;

const F = (t, more = {}) => ({ t, req: true, ...more });
const opt = (field) => ({ ...field, req: false });
const ID = F("id");
const TAG = F("tag");
const MASS_G = F("int", { min: 1, max: 200_000 });
const PRICE = F("int", { min: 0, max: 10_000_000 });
const KEY = F("map", {
  fields: {
    alg: F("enum", { choices: ["ed25519", "ecdsa-p256"] }),
    pub: F("bytes"),
    storage: F("enum", { choices: ["software", "hsm"] }),
    not_after: opt(F("int", { min: 0 })),
  },
});
const CUSTODIANS = ["herder_agent", "cooperative", "plant"];

export const KINDS = Object.freeze({
  "actor.enroll": {
    roles: ["trace_office"],
    body: {
      id: ID,
      role: F("enum", { choices: ROLES }),
      banner: F("county"),
      name: opt(F("str", { max: 128 })),
      parent: opt(F("id")),
      keys: F("list", { min: 1, max: 4, item: KEY }),
    },
  },
  "actor.revoke": { roles: ["trace_office"], body: { id: ID, reason: F("str", { max: 256 }) } },
  "key.rotate": {
    roles: ["trace_office"],
    body: {
      id: ID,
      add: opt(F("list", { max: 4, item: KEY })),
      revoke: opt(F("list", { max: 8, item: F("str", { max: 32 }) })),
    },
  },
  "device.register": {
    roles: ["trace_office", "banner_office"],
    body: { device: ID, owner: ID, key: KEY, model: opt(F("str", { max: 64 })) },
  },
  "device.retire": { roles: ["trace_office", "banner_office"], body: { device: ID, reason: F("str", { min: 1, max: 256 }) } },
  "tags.issue": {
    roles: ["trace_office"],
    body: { to: ID, first: TAG, count: F("int", { min: 1, max: 100_000 }), year: F("int", { min: 2000, max: 2100 }) },
  },
  "lamb.tag": {
    roles: ["herder_agent", "cooperative"],
    body: {
      tag: TAG,
      chip: opt(F("chip")),
      herder: ID,
      born: F("date"),
      breed: F("str", { max: 64 }),
      sex: F("enum", { choices: ["male", "female"] }),
      sumu: F("str", { max: 64 }),
    },
  },
  "custody.ship": { roles: CUSTODIANS, body: { shipment: ID, to: ID, lambs: F("list", { min: 1, item: TAG }) } },
  "custody.receive": { roles: CUSTODIANS, body: { shipment: ID } },
  "lamb.slaughter": {
    roles: ["plant"],
    body: {
      tag: TAG,
      carcass: ID,
      carcass_mass_g: MASS_G,
      quarantine_cert: F("str", { min: 1, max: 64 }),
      price_fen_per_kg: PRICE,
      market_price_fen_per_kg: PRICE,
      date: F("date"),
    },
  },
  "label.issue": {
    roles: ["plant"],
    body: {
      carcass: ID,
      labels: F("list", {
        min: 1,
        max: 64,
        item: F("map", {
          fields: {
            label: ID,
            cut: F("str", { min: 1, max: 64 }),
            net_mass_g: MASS_G,
            packed: F("date"),
            check: F("bytes", { size: 32 }),
          },
        }),
      }),
    },
  },
  recall: {
    roles: ["trace_office"],
    body: {
      targets: F("list", {
        min: 1,
        item: F("map", { fields: { type: F("enum", { choices: ["lamb", "carcass", "label"] }), id: F("str") } }),
      }),
      reason: F("str", { min: 1, max: 256 }),
    },
  },
});

function badField(path, why) {
  fail("bad_event", `${path}: ${why}`);
}

function validDate(text) {
  const m = DATE_RE.exec(text);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (y < 1 || mo < 1 || mo > 12 || d < 1) return false;
  const days = new Date(Date.UTC(2000, mo, 0)).getUTCDate(); // days in month (leap year base)
  if (d > days) return false;
  return !(mo === 2 && d === 29 && !(y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)));
}

function checkFields(spec, value, path) {
  if (!isMap(value)) badField(path, "must be a map");
  for (const k of Object.keys(value)) if (!hasOwn(spec, k)) badField(`${path}.${k}`, "is not a field of this kind");
  for (const [name, f] of Object.entries(spec)) {
    if (!hasOwn(value, name)) {
      if (f.req) badField(`${path}.${name}`, "is required");
      continue;
    }
    checkField(f, value[name], `${path}.${name}`);
  }
}

function checkField(f, v, path) {
  const t = f.t;
  if (["str", "id", "tag", "chip", "date", "county", "enum"].includes(t)) {
    if (typeof v !== "string") badField(path, "must be a string");
    const n = codePoints(v);
    if (n > (t === "str" && f.max ? f.max : LIMITS.maxStrChars)) badField(path, "too long");
    if (t === "str" && f.min !== undefined && n < f.min) badField(path, "too short");
    if (t === "id" && !ID_RE.test(v)) badField(path, "not an id");
    if (t === "tag" && !(TAG_RE.test(v) && hasOwn(COUNTIES, v.slice(1, 7)))) badField(path, "not an ear tag");
    if (t === "chip" && !CHIP_RE.test(v)) badField(path, "not a chip id");
    if (t === "date" && !validDate(v)) badField(path, "not a YYYY-MM-DD date");
    if (t === "county" && !hasOwn(COUNTIES, v)) badField(path, "not a county code of the league");
    if (t === "enum" && !f.choices.includes(v)) badField(path, `must be one of ${f.choices.join(", ")}`);
  } else if (t === "int") {
    if (!isInt(v)) badField(path, "must be an integer");
    if (f.min !== undefined && v < f.min) badField(path, `must be at least ${f.min}`);
    if (f.max !== undefined && v > f.max) badField(path, `must be at most ${f.max}`);
  } else if (t === "bytes") {
    if (!(v instanceof Uint8Array)) badField(path, "must be bytes");
    if (f.size !== undefined && v.length !== f.size) badField(path, `must be ${f.size} bytes`);
    if (v.length > LIMITS.maxStrChars) badField(path, "too long");
  } else if (t === "list") {
    if (!Array.isArray(v)) badField(path, "must be a list");
    const hi = Math.min(f.max ?? LIMITS.maxListItems, LIMITS.maxListItems);
    if (v.length < (f.min ?? 0) || v.length > hi) badField(path, `must hold ${f.min ?? 0} to ${hi} items`);
    v.forEach((x, i) => checkField(f.item, x, `${path}[${i}]`));
  } else if (t === "map") {
    checkFields(f.fields, v, path);
  } else {
    throw new Error(`unknown field type ${t}`); // a declaration bug, not input
  }
}

/** A log leaf (canonical signed event) parsed as ledger.events.parse_leaf does:
 * {envelope, kind, actor, time, body, sigs: [{key, sig}], id, signing}.  Signatures are
 * NOT verified here. */
export async function parseLeaf(leaf) {
  const value = decode(leaf, { maxBytes: LIMITS.maxEventBytes });
  if (!hasExactly(value, ["event", "sigs"])) fail("bad_event", 'a signed event has exactly "event" and "sigs"');
  const env = value.event;
  if (!hasExactly(env, ["v", "chain", "kind", "actor", "time", "body"])) {
    fail("bad_event", "an envelope has exactly v, chain, kind, actor, time and body");
  }
  if (env.v !== 1) fail("bad_event", "envelope version must be 1");
  for (const name of ["chain", "kind", "actor"]) {
    if (typeof env[name] !== "string" || env[name].length === 0 || codePoints(env[name]) > 64) {
      fail("bad_event", `event.${name} must be a short string`);
    }
  }
  if (typeof env.time !== "number" || !Number.isSafeInteger(env.time) || env.time < 0) {
    fail("bad_event", "event.time must be milliseconds since the epoch");
  }
  const kind = KINDS[env.kind];
  if (!hasOwn(KINDS, env.kind)) fail("bad_event", `unknown event kind ${env.kind}`);
  checkFields(kind.body, env.body, "body");
  const sigs = value.sigs;
  if (!Array.isArray(sigs) || sigs.length === 0) fail("bad_event", "an event needs at least one signature");
  if (sigs.length > LIMITS.maxSigsPerEvent) fail("bad_event", `at most ${LIMITS.maxSigsPerEvent} signatures`);
  const seen = new Set();
  for (const s of sigs) {
    if (!hasExactly(s, ["key", "sig"])) fail("bad_event", 'a signature has exactly "key" and "sig"');
    if (typeof s.key !== "string" || s.key.length !== 32 || !(s.sig instanceof Uint8Array) || s.sig.length !== 64) {
      fail("bad_event", "a signature names a 32-char key id and has 64 bytes");
    }
    if (seen.has(s.key)) fail("bad_event", "a key signs an event once");
    seen.add(s.key);
  }
  const envelopeBytes = encode(env);
  return {
    envelope: env,
    kind: env.kind,
    actor: env.actor,
    time: env.time,
    chain: env.chain,
    body: env.body,
    sigs: sigs.map((s) => ({ key: s.key, sig: s.sig })),
    id: await H(TAGS.event, envelopeBytes),
    envelopeBytes,
    signing: signingMessage(TAGS.event, envelopeBytes),
  };
}

// ------------------------------------------- genesis, headers, votes (JSON to values)

function jsonInt(v, what, min = 0) {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) fail("malformed", `${what} must be an integer`);
  return v;
}

function jsonStr(v, what) {
  if (typeof v !== "string") fail("malformed", `${what} must be a string`);
  return v;
}

function jsonCounty(v, what) {
  if (typeof v !== "string" || !hasOwn(COUNTIES, v)) fail("malformed", `${what} must be a county code of the league`);
  return v;
}

function jsonPub(alg, hex, what) {
  if (!hasOwn(KEY_SIZES, alg)) fail("malformed", `${what}: unknown key algorithm ${alg}`);
  return hexToBytes(hex, what, KEY_SIZES[alg]);
}

// ledger.genesis.Params: every parameter a genesis may name and its default. A genesis
// hashes with the defaults filled in, terminal_quotas only when not empty and state_root
// only when set, as Python re-encodes it; anything else is refused, as Python refuses it.
const DAY_MS = 86_400_000;
const PARAM_DEFAULTS = Object.freeze({
  slaughter_requires_hsm: false,
  max_lateness_ms: 30 * DAY_MS,
  max_future_ms: 5 * 60_000,
  tag_quotas: Object.freeze({}),
  block_interval_ms: 500,
  timeout_propose_ms: 3_000,
  timeout_prevote_ms: 1_000,
  timeout_precommit_ms: 1_000,
  timeout_delta_ms: 500,
});

function quotas(v, what) {
  if (!isMap(v)) fail("malformed", `params.${what} maps county codes to counts`);
  const out = {};
  for (const [county, n] of Object.entries(v)) {
    if (!hasOwn(COUNTIES, county)) fail("malformed", `params.${what}: ${county} is not a county code of the league`);
    out[county] = jsonInt(n, `params.${what}.${county}`);
  }
  return out;
}

function genesisParams(p) {
  if (!isMap(p)) fail("malformed", "genesis params must be a map");
  for (const k of Object.keys(p)) {
    if (!hasOwn(PARAM_DEFAULTS, k) && k !== "terminal_quotas" && k !== "state_root") fail("malformed", `unknown parameter ${k}`);
  }
  const out = {};
  for (const [k, d] of Object.entries(PARAM_DEFAULTS)) {
    if (!hasOwn(p, k)) out[k] = isMap(d) ? {} : d;
    else if (typeof d === "boolean") {
      if (typeof p[k] !== "boolean") fail("malformed", `params.${k} must be true or false`);
      out[k] = p[k];
    } else out[k] = isMap(d) ? quotas(p[k], k) : jsonInt(p[k], `params.${k}`);
  }
  if (hasOwn(p, "terminal_quotas")) {
    const q = quotas(p.terminal_quotas, "terminal_quotas");
    if (Object.keys(q).length) out.terminal_quotas = q;
  }
  if (hasOwn(p, "state_root")) {
    if (!STATE_ROOT_KINDS.includes(p.state_root)) fail("malformed", `params.state_root must be one of ${STATE_ROOT_KINDS.join(", ")}`);
    out.state_root = p.state_root;
  }
  return out;
}

/** The genesis value (ledger.genesis.Genesis.to_dict) from its JSON form (bytes as hex).
 * Shape only: the hash check against the trusted anchor is what makes it trusted. */
export function genesisFromJson(j) {
  if (!hasExactly(j, ["chain", "time", "validators", "trace_office", "params"])) {
    fail("malformed", "genesis has exactly chain, time, validators, trace_office and params");
  }
  if (!Array.isArray(j.validators) || j.validators.length === 0 || j.validators.length > 1024) {
    fail("malformed", "genesis names 1 to 1024 validators");
  }
  const names = new Set();
  const keys = new Set();
  const validators = j.validators.map((v, i) => {
    if (!hasExactly(v, ["name", "banner", "alg", "pub", "power"])) fail("malformed", `genesis validator ${i}`);
    if (typeof v.name !== "string" || !ID_RE.test(v.name) || names.has(v.name)) fail("malformed", "validator names are unique ids");
    names.add(v.name);
    const power = jsonInt(v.power, "validator power", 1);
    if (power >= 2 ** 32) fail("malformed", "validator power must be below 2**32");
    const pub = jsonPub(v.alg, v.pub, "validator key");
    // one key for two validators is refused, as ledger.genesis refuses it
    const key = `${v.alg}:${bytesToHex(pub)}`;
    if (keys.has(key)) fail("malformed", "each validator has its own key");
    keys.add(key);
    return { name: v.name, banner: jsonCounty(v.banner, "validator banner"), alg: v.alg, pub, power };
  });
  const to = j.trace_office;
  if (!hasExactly(to, ["id", "banner", "keys"], ["name"]) || !Array.isArray(to.keys) || to.keys.length === 0 || to.keys.length > 8) {
    fail("malformed", "genesis trace_office has id, banner, 1 to 8 keys[, name]");
  }
  if (typeof to.id !== "string" || !ID_RE.test(to.id)) fail("malformed", "the trace office id must be an id");
  const traceOffice = { id: to.id, banner: jsonCounty(to.banner, "trace office banner") };
  if (hasOwn(to, "name")) {
    if (codePoints(jsonStr(to.name, "trace office name")) > 128) fail("malformed", "the trace office name is at most 128 characters");
    traceOffice.name = to.name;
  }
  traceOffice.keys = to.keys.map((k) => {
    if (!hasExactly(k, ["alg", "pub", "storage"])) fail("malformed", "a root key has alg, pub and storage");
    if (k.storage !== "software" && k.storage !== "hsm") fail("malformed", "a root key's storage is software or hsm");
    return { alg: k.alg, pub: jsonPub(k.alg, k.pub, "root key"), storage: k.storage };
  });
  const params = genesisParams(j.params);
  return { chain: jsonStr(j.chain, "chain"), time: jsonInt(j.time, "genesis time"), validators, trace_office: traceOffice, params };
}

export async function genesisHash(genesis) {
  return H(TAGS.genesis, encode(genesis));
}

/** Hash of a validator set as headers carry it (ledger.genesis.validators_hash). */
export async function validatorsHash(validators) {
  const list = validators.map((v) => ({ name: v.name, banner: v.banner, alg: v.alg, pub: v.pub, power: v.power }));
  return H(TAGS.genesis, encode({ validators: list }));
}

const HEADER_FIELDS = ["chain", "height", "time", "prev", "log_size", "log_root", "validators", "proposer"];

/** A header value (ledger.blocks.header.Header.to_dict) from its JSON form. */
export function headerFromJson(j) {
  if (!hasExactly(j, HEADER_FIELDS, ["state_root"])) fail("malformed", "a header has exactly the fields of DESIGN §5");
  const h = {
    chain: jsonStr(j.chain, "header.chain"),
    height: jsonInt(j.height, "header.height"),
    time: jsonInt(j.time, "header.time"),
    prev: hexToBytes(j.prev, "header.prev", 32),
    log_size: jsonInt(j.log_size, "header.log_size"),
    log_root: hexToBytes(j.log_root, "header.log_root", 32),
    validators: hexToBytes(j.validators, "header.validators", 32),
    proposer: jsonStr(j.proposer, "header.proposer"),
  };
  // absent, or 32 bytes: a null would read as the header without it (ledger.blocks.header)
  if (hasOwn(j, "state_root")) h.state_root = hexToBytes(j.state_root, "header.state_root", 32);
  return h;
}

export async function headerHash(header) {
  return H(TAGS.header, encode(header));
}

/** A commit certificate value from its JSON form; `compact` (a v3 bundle's): without the
 * height and block hash, which the caller takes from the header (null until then). */
export function certificateFromJson(j, compact = false) {
  const fields = compact ? ["round", "precommits"] : ["height", "round", "block", "precommits"];
  if (!hasExactly(j, fields)) fail("malformed", `a ${compact ? "v3 " : ""}certificate has exactly ${fields.join(", ")}`);
  if (!Array.isArray(j.precommits) || j.precommits.length > LIMITS.maxPrecommits) {
    fail("malformed", "certificate precommits must be a list");
  }
  return {
    height: compact ? null : jsonInt(j.height, "certificate.height"),
    round: jsonInt(j.round, "certificate.round"),
    block: compact ? null : hexToBytes(j.block, "certificate.block", 32),
    precommits: j.precommits.map((p) => {
      if (!hasExactly(p, ["validator", "sig"])) fail("malformed", "a precommit has validator and sig");
      return { validator: jsonStr(p.validator, "precommit.validator"), sig: hexToBytes(p.sig, "precommit.sig", 64) };
    }),
  };
}

/** The exact bytes a validator signs for a vote (ledger.blocks.certificate.vote_bytes). */
export function voteBytes(type, chain, height, round, block) {
  return signingMessage(TAGS.vote, encode({ type, chain, height, round, block }));
}

// ------------------------------------------------------------------------ the bundle
//
// The checks and their codes are verify/label.py's (verify/errors.py), step for step, so
// that the page and `lambtrace verify-label` accept and refuse the same bundles.

const FIELDS_V1 = ["format", "genesis_hash", "genesis", "label", "checkpoint", "events", "gaps"];
const FIELDS_V2 = ["format", "genesis_hash", "label", "checkpoint", "events", "proof", "gaps"];
const FIELDS_V3 = [...FIELDS_V2, "recalls"];
const MEMBERSHIP = ["actor.enroll", "key.rotate", "device.register", "actor.revoke"];

function hashList(list, most, what) {
  if (!Array.isArray(list) || list.length > most) fail("malformed_bundle", `${what} must be a list of at most ${most} hashes`);
  return list.map((p) => hexToBytes(p, `${what} hash`, 32));
}

/** v3's form of a list of hashes: one byte string (hex), 32 bytes after 32 bytes. */
function hashString(text, most, what) {
  const bytes = hexToBytes(text, what);
  if (bytes.length % 32 || bytes.length > most * 32) fail("malformed_bundle", `${what} must be at most ${most} 32-byte hashes, one after another`);
  return splitHashes(bytes);
}

const JSON_MAX_DEPTH = 64; // verify/label.py JSON_MAX_DEPTH

/** Every number in a JSON bundle is an integer within ±(2^53 − 1), as verify/label.py
 * reads JSON: a larger one no JSON reader holds exactly, a fraction is no field's value;
 * and nothing is nested deeper than JSON_MAX_DEPTH (a bundle needs 6). */
function onlySafeIntegers(j) {
  const todo = [[j, 1]];
  while (todo.length) {
    const [v, depth] = todo.pop();
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v)) fail("malformed_bundle", "numbers in a JSON bundle are integers within ±(2^53 - 1)");
    } else if (v !== null && typeof v === "object") {
      if (depth > JSON_MAX_DEPTH) fail("malformed_bundle", `a JSON bundle is nested at most ${JSON_MAX_DEPTH} deep`);
      for (const x of Object.values(v)) todo.push([x, depth + 1]);
    }
  }
}

const isHexText = (v) => typeof v !== "string" || HEX_RE.test(v);

/** Every text where a JSON bundle holds bytes is lowercase hex (other types are left for
 * the shape checks), checked before anything else of a bundle of a known format, as
 * verify/label.py converts them (_json_to_values).  Returns the embedded genesis with
 * its keys as bytes (null when there is none). */
function checkJsonHex(j) {
  const bad = (what) => fail("malformed_bundle", `${what} is not lowercase hex`);
  if (!isHexText(j.genesis_hash)) bad("genesis_hash");
  const genesis = hasOwn(j, "genesis") ? { json: j.genesis, value: unhexPubs(j.genesis) } : null;
  const cp = j.checkpoint;
  if (isMap(cp)) {
    if (isMap(cp.header)) {
      for (const k of ["prev", "log_root", "validators", "state_root"]) {
        if (hasOwn(cp.header, k) && !isHexText(cp.header[k])) bad(`header.${k}`);
      }
    }
    const cert = cp.certificate;
    if (isMap(cert)) {
      if (hasOwn(cert, "block") && !isHexText(cert.block)) bad("certificate.block");
      if (Array.isArray(cert.precommits)) {
        for (const p of cert.precommits) if (isMap(p) && hasOwn(p, "sig") && !isHexText(p.sig)) bad("precommit.sig");
      }
    }
  }
  if (Array.isArray(j.events)) {
    for (const e of j.events) {
      if (isMap(e)) {
        if (hasOwn(e, "leaf") && !isHexText(e.leaf)) bad("event.leaf");
        if (Array.isArray(e.proof) && !e.proof.every(isHexText)) bad("event.proof");
      } else if (Array.isArray(e) && e.length === 2 && !isHexText(e[1])) bad("event.leaf");
    }
  }
  if (Array.isArray(j.proof) ? !j.proof.every(isHexText) : hasOwn(j, "proof") && !isHexText(j.proof)) bad("proof");
  if (isMap(j.recalls)) {
    for (const k of ["mask", "siblings", "other"]) if (hasOwn(j.recalls, k) && !isHexText(j.recalls[k])) bad(`recalls.${k}`);
  }
  return genesis;
}

/** A JSON genesis with its `pub` fields as bytes (verify/label.py _unhex_pubs): hex that
 * is not lowercase is refused, other types are left for the genesis check. */
function unhexPubs(v) {
  if (Array.isArray(v)) return v.map(unhexPubs);
  if (!isMap(v)) return v;
  const out = {};
  for (const [k, x] of Object.entries(v)) {
    if (k !== "pub") out[k] = unhexPubs(x);
    else if (typeof x !== "string") out[k] = x;
    else if (!HEX_RE.test(x)) fail("malformed_bundle", "a genesis pub in the bundle is not lowercase hex");
    else out[k] = hexToBytes(x);
  }
  return out;
}

function embeddedGenesis(json) {
  try {
    return genesisFromJson(json);
  } catch (e) {
    if (e instanceof VerificationError && e.code === "malformed") fail("wrong_genesis", `the genesis document in the bundle is malformed: ${e.message}`);
    throw e;
  }
}

function sameEncoding(a, b) {
  try {
    return bytesEqual(encode(a), encode(b));
  } catch {
    return false; // a value canonical encoding cannot hold is no genesis
  }
}

/** The bundle's shape (format, exact fields, types, sizes) as values with real bytes; no hashing. */
function parseBundle(j) {
  if (!isMap(j)) fail("malformed_bundle", "a bundle is a map");
  onlySafeIntegers(j);
  if (!hasOwn(j, "format")) fail("malformed_bundle", "the bundle has no format");
  if (typeof j.format !== "string") fail("malformed_bundle", "format must be text");
  if (!FORMATS.includes(j.format)) fail("unsupported_format", `bundle format ${j.format.slice(0, 64)}; this page reads ${FORMATS.join(", ")}`);
  const genesis = checkJsonHex(j);
  const v1 = j.format === FORMAT_V1;
  const v3 = j.format === FORMAT;
  const fields = v1 ? FIELDS_V1 : v3 ? FIELDS_V3 : FIELDS_V2;
  if (!hasExactly(j, fields, v1 ? [] : ["genesis"])) {
    fail("malformed_bundle", `a ${j.format} bundle has exactly the fields ${fields.join(", ")}${v1 ? "" : " [, genesis]"}`);
  }
  if (!Array.isArray(j.gaps)) fail("malformed_bundle", "gaps must be a list");
  if (j.gaps.length) {
    const named = j.gaps.slice(0, 5).map((g) => (isMap(g) ? `${g.kind} ${g.subject}` : "?"));
    fail("incomplete_bundle", `the bundle's builder left parts out: ${named.join("; ")}`);
  }
  if (typeof j.label !== "string" || !ID_RE.test(j.label)) fail("malformed_bundle", "label must be a label id");
  if (!hasExactly(j.checkpoint, ["header", "certificate"])) fail("malformed_bundle", "checkpoint is a map of header and certificate");
  if (!Array.isArray(j.events) || j.events.length === 0 || j.events.length > LIMITS.maxEvents) {
    fail("malformed_bundle", `events must be a list of 1 to ${LIMITS.maxEvents} entries`);
  }
  const entryFields = v1 ? ["leaf", "index", "proof"] : ["leaf", "index"];
  const entries = j.events.map((pair, k) => {
    let e = pair;
    if (v3) { // v3: a pair [index, leaf]
      if (!Array.isArray(pair) || pair.length !== 2) fail("malformed_bundle", `events[${k}] must be a pair [index, leaf]`);
      e = { index: pair[0], leaf: pair[1] };
    } else if (!hasExactly(e, entryFields)) {
      fail("malformed_bundle", `events[${k}] must have exactly ${entryFields.join(", ")}`);
    }
    const leaf = hexToBytes(e.leaf, `events[${k}].leaf`);
    if (leaf.length === 0 || leaf.length > LIMITS.maxEventBytes) {
      fail("malformed_bundle", `events[${k}].leaf must be 1 to ${LIMITS.maxEventBytes} bytes`);
    }
    const index = jsonInt(e.index, `events[${k}].index`);
    return { leaf, index, proof: v1 ? hashList(e.proof, LIMITS.maxProofNodes, `events[${k}].proof`) : [] };
  });
  return {
    format: j.format,
    genesisHash: hexToBytes(j.genesis_hash, "genesis_hash", 32),
    // an embedded genesis is read at the anchor (step 2), as verify/label.py reads it:
    // here only its keys' hex, which a JSON bundle must hold as lowercase hex
    genesis,
    label: j.label,
    header: headerFromJson(j.checkpoint.header),
    certificate: certificateFromJson(j.checkpoint.certificate, v3),
    entries,
    multiproof: v1 ? null : v3 ? hashString(j.proof, LIMITS.maxProofNodes * entries.length, "proof")
      : hashList(j.proof, LIMITS.maxProofNodes * entries.length, "proof"),
    recalls: v3 ? recallProofFromJson(j.recalls) : null,
  };
}

/** A normalized fingerprint (lowercase hex, 32 to 64 chars), or throws bad_fingerprint. */
export function parseFingerprint(text) {
  const fp = String(text).trim().toLowerCase();
  if (!/^[0-9a-f]+$/.test(fp) || fp.length < LIMITS.minFingerprintHex || fp.length > 64) {
    fail("bad_fingerprint", `the genesis fingerprint must be ${LIMITS.minFingerprintHex} to 64 hex characters`);
  }
  return fp;
}

function one(found, what) {
  if (found.length === 0) fail("missing_event", `the bundle has no ${what}`);
  if (found.length > 1) fail("inconsistent_story", `the bundle has ${found.length} of ${what}`);
  return found[0];
}

function inRange(tag, first, count) {
  return tag.slice(0, 7) === first.slice(0, 7) && Number(tag.slice(7)) - Number(first.slice(7)) >= 0
    && Number(tag.slice(7)) - Number(first.slice(7)) < count;
}

/** The one story of `label` the bundle's path events tell (verify/label.py _story). */
function buildStory(label, events) {
  const byKind = (k) => events.filter((e) => e.kind === k);
  const li = one(byKind("label.issue").filter((e) => e.body.labels.some((l) => l.label === label)), `label.issue naming label ${label}`);
  const entry = li.body.labels.find((l) => l.label === label);
  const carcass = li.body.carcass;
  const plant = li.actor;
  const sl = one(byKind("lamb.slaughter").filter((e) => e.body.carcass === carcass), `lamb.slaughter of carcass ${carcass}`);
  if (sl.actor !== plant) fail("inconsistent_story", `carcass ${carcass} was slaughtered by ${sl.actor}, labelled by ${plant}`);
  if (sl.index > li.index) fail("inconsistent_story", "the label was issued before its carcass existed");
  if (li.body.labels.reduce((s, l) => s + l.net_mass_g, 0) > sl.body.carcass_mass_g) {
    fail("inconsistent_story", "labelled cuts weigh more than the carcass");
  }
  const tag = sl.body.tag;
  const tg = one(byKind("lamb.tag").filter((e) => e.body.tag === tag), `lamb.tag of ear tag ${tag}`);
  if (tg.index > sl.index) fail("inconsistent_story", "the lamb was slaughtered before it was tagged");
  const is = one(byKind("tags.issue").filter((e) => inRange(tag, e.body.first, e.body.count)), `tags.issue of a range holding ear tag ${tag}`);
  if (is.index > tg.index) fail("inconsistent_story", "the tag was applied before it was issued");
  // custody: ship by the holder -> receive by the addressee -> ..., in log order
  const ships = byKind("custody.ship").filter((e) => e.body.lambs.includes(tag));
  const receives = new Map();
  for (const r of byKind("custody.receive")) {
    if (!receives.has(r.body.shipment)) receives.set(r.body.shipment, []);
    receives.get(r.body.shipment).push(r);
  }
  if (new Set(ships.map((s) => s.body.shipment)).size !== ships.length) fail("inconsistent_story", "two shipments of this lamb share an id");
  let holder = tg.actor;
  let last = tg.index;
  const hops = [];
  for (const s of ships) {
    const sid = s.body.shipment;
    if (s.index < last) fail("inconsistent_story", `shipment ${sid} is out of order in the custody chain`);
    if (s.actor !== holder) fail("inconsistent_story", `shipment ${sid} was sent by ${s.actor}, but ${holder} held the lamb`);
    const r = one(receives.get(sid) ?? [], `custody.receive of shipment ${sid}`);
    if (r.index < s.index) fail("inconsistent_story", `shipment ${sid} was received before it was sent`);
    if (r.actor !== s.body.to) fail("inconsistent_story", `shipment ${sid} was received by ${r.actor}, not its addressee`);
    hops.push({ shipment: sid, from: s.actor, to: r.actor, shippedAt: s.time, receivedAt: r.time, shipIndex: s.index, receiveIndex: r.index });
    holder = r.actor;
    last = r.index;
  }
  if (sl.index < last) fail("inconsistent_story", "the lamb was slaughtered while still in custody elsewhere");
  if (holder !== plant) fail("inconsistent_story", `the custody chain ends with ${holder}, not with the plant ${plant}`);
  const created = { lamb: [tag, tg.index], carcass: [carcass, sl.index], label: [label, li.index] };
  const recalls = [];
  const recallIndexes = new Set();
  for (const r of byKind("recall")) {
    for (const t of r.body.targets) {
      const [ident, made] = created[t.type];
      if (t.id !== ident) continue;
      if (r.index < made) fail("inconsistent_story", `a recall of ${t.type} ${ident} precedes its creation`);
      recalls.push({ type: t.type, id: ident, at: r.time, reason: r.body.reason, index: r.index, event: bytesToHex(r.id) });
      recallIndexes.add(r.index);
    }
  }
  const indexes = new Set([li.index, sl.index, tg.index, is.index, ...recallIndexes]);
  for (const h of hops) (indexes.add(h.shipIndex), indexes.add(h.receiveIndex));
  return { indexes, tg, is, sl, li, entry, hops, recalls, recallIndexes: [...recallIndexes].sort((x, y) => x - y), carcass, tag };
}

/** Actors and keys as the membership events in the bundle (and genesis) make them
 * (verify/label.py _members); checks of who may do what come later. */
async function buildMembers(g, events) {
  const to = g.trace_office;
  const root = { id: to.id, role: "trace_office", banner: to.banner, name: to.name ?? "", parent: null, index: -1, revokedAt: null, revokedIndex: null };
  const actors = new Map([[root.id, root]]);
  const keys = new Map();
  for (const k of to.keys) {
    const kid = await keyId(k.alg, k.pub);
    keys.set(kid, { kid, alg: k.alg, pub: k.pub, storage: k.storage, actor: root.id, device: null, notBefore: g.time, notAfter: null, index: -1, revokedAt: null, revokedIndex: null });
  }
  const enrolIndex = new Map();
  const revocations = new Map(); // revoking index -> {actors: Set, keys: Set}
  const addKey = async (rec, actor, device, ev) => {
    const kid = await keyId(rec.alg, rec.pub);
    if (keys.has(kid)) fail("inconsistent_story", `key ${kid} is put on the ledger twice`);
    keys.set(kid, {
      kid, alg: rec.alg, pub: rec.pub, storage: rec.storage, actor, device, notBefore: ev.time,
      notAfter: hasOwn(rec, "not_after") ? rec.not_after : null, index: ev.index, revokedAt: null, revokedIndex: null,
    });
  };
  for (const ev of events) {
    const b = ev.body;
    if (ev.kind === "actor.enroll") {
      if (actors.has(b.id)) fail("inconsistent_story", `actor ${b.id} is enrolled twice`);
      actors.set(b.id, { id: b.id, role: b.role, banner: b.banner, name: b.name ?? "", parent: b.parent ?? null, index: ev.index, revokedAt: null, revokedIndex: null });
      enrolIndex.set(b.id, ev.index);
      for (const rec of b.keys) await addKey(rec, b.id, null, ev);
    } else if (ev.kind === "device.register") {
      await addKey(b.key, b.owner, b.device, ev);
    } else if (ev.kind === "key.rotate") {
      const revoked = new Set();
      for (const kid of b.revoke ?? []) {
        const k = keys.get(kid);
        if (!k) continue; // a key the bundle does not prove signed nothing in it
        if (k.actor !== b.id || k.device !== null) fail("inconsistent_story", `key.rotate revokes key ${kid}, which is not a key of ${b.id}`);
        if (k.revokedAt === null) (k.revokedAt = ev.time), (k.revokedIndex = ev.index);
        revoked.add(kid);
      }
      for (const rec of b.add ?? []) await addKey(rec, b.id, null, ev);
      if (revoked.size) revocations.set(ev.index, { actors: new Set(), keys: revoked });
    } else if (ev.kind === "actor.revoke") {
      const a = actors.get(b.id);
      if (!a) fail("actor_not_proven", `actor.revoke of ${b.id}, whose enrolment is not in the bundle`);
      if (a.revokedAt === null) (a.revokedAt = ev.time), (a.revokedIndex = ev.index);
      revocations.set(ev.index, { actors: new Set([b.id]), keys: new Set() });
    }
  }
  return { root: root.id, actors, keys, enrolIndex, revocations };
}

function referencedActors(ev) {
  const b = ev.body;
  if (ev.kind === "tags.issue" || ev.kind === "custody.ship") return [b.to];
  if (ev.kind === "actor.enroll") return b.parent ? [b.parent] : [];
  if (ev.kind === "device.register") return [b.owner];
  if (ev.kind === "key.rotate" || ev.kind === "actor.revoke") return [b.id];
  return [];
}

/** Every leaf the story needs: its events and, transitively, the enrolment of each actor
 * they rely on, the event that put each signing key on the ledger, and the bundle's
 * revocations of those actors and keys (verify/label.py _closure). */
function closure(storyIndexes, byIndex, m) {
  const needed = new Set();
  const actors = new Set();
  const keys = new Set();
  // from the last leaf down, as verify/label.py walks it: where several parts are
  // missing, both name the same one first
  const todo = [...storyIndexes].sort((x, y) => x - y);
  for (;;) {
    while (todo.length) {
      const i = todo.pop();
      if (needed.has(i)) continue;
      needed.add(i);
      const ev = byIndex.get(i);
      for (const aid of [ev.actor, ...referencedActors(ev)]) {
        actors.add(aid);
        if (aid === m.root) continue;
        const j = m.enrolIndex.get(aid);
        if (j === undefined) fail("actor_not_proven", `leaf ${i} (${ev.kind}) relies on actor ${aid}, whose enrolment is not in the bundle`);
        todo.push(j);
      }
      for (const s of ev.sigs) {
        const k = m.keys.get(s.key);
        if (!k) fail("key_not_proven", `leaf ${i} is signed by key ${s.key}, which is neither a genesis key nor enrolled by an event in the bundle`);
        keys.add(s.key);
        if (k.index >= 0) todo.push(k.index);
      }
    }
    for (const [j, r] of m.revocations) {
      if (!needed.has(j) && ([...r.actors].some((a) => actors.has(a)) || [...r.keys].some((k) => keys.has(k)))) todo.push(j);
    }
    if (!todo.length) return needed;
  }
}

const OWNERS = ["cooperative", "herder_agent", "plant", "banner_office"];

/** The proven actor may sign `ev` with the keys it names at the event's time, and neither
 * it nor a key was revoked earlier in the log (verify/label.py _check_authorised); returns
 * the signature checks to make. */
function checkAuthorised(ev, m, g) {
  const i = ev.index;
  const actor = m.actors.get(ev.actor);
  if (actor.index >= i) fail("key_not_valid_at_time", `leaf ${i} is signed by ${actor.id} before its enrolment`);
  if (!KINDS[ev.kind].roles.includes(actor.role)) fail("not_authorised", `a ${actor.role} may not sign ${ev.kind} (leaf ${i})`);
  if (actor.revokedAt !== null && actor.revokedAt <= ev.time) fail("key_not_valid_at_time", `leaf ${i} is signed by ${actor.id} after it was revoked`);
  if (actor.revokedIndex !== null && actor.revokedIndex < i) {
    fail("key_not_valid_at_time", `leaf ${i} is signed by ${actor.id}, revoked earlier in the log (leaf ${actor.revokedIndex})`);
  }
  const jobs = [];
  for (const s of ev.sigs) {
    const k = m.keys.get(s.key);
    if (k.actor !== ev.actor) fail("key_not_proven", `key ${s.key} belongs to ${k.actor}, not to ${ev.actor} (leaf ${i})`);
    if (k.index >= i) fail("key_not_valid_at_time", `key ${s.key} came onto the ledger after leaf ${i}`);
    if (ev.time < k.notBefore) fail("key_not_valid_at_time", `key ${s.key} was not yet enrolled at leaf ${i}'s time`);
    if (k.notAfter !== null && ev.time > k.notAfter) fail("key_not_valid_at_time", `key ${s.key} had expired at leaf ${i}'s time`);
    if (k.revokedAt !== null && k.revokedAt <= ev.time) fail("key_not_valid_at_time", `key ${s.key} was revoked at leaf ${i}'s time`);
    if (k.revokedIndex !== null && k.revokedIndex < i) {
      fail("key_not_valid_at_time", `key ${s.key} was revoked earlier in the log (leaf ${k.revokedIndex}) than leaf ${i}`);
    }
    if (ev.kind === "lamb.slaughter" && g.params.slaughter_requires_hsm === true && k.storage !== "hsm") {
      fail("not_authorised", `slaughter attestations must be signed with HSM keys (leaf ${i})`);
    }
    jobs.push({ what: `leaf ${i} (${ev.kind})`, alg: k.alg, pub: k.pub, message: ev.signing, sig: s.sig });
  }
  for (const aid of referencedActors(ev)) {
    const other = m.actors.get(aid);
    if (other.index >= i) fail("inconsistent_story", `leaf ${i} names actor ${aid} before its enrolment`);
    if (other.revokedIndex !== null && other.revokedIndex < i && ev.kind !== "actor.revoke") {
      fail("inconsistent_story", `leaf ${i} names actor ${aid}, revoked earlier in the log`);
    }
  }
  const b = ev.body;
  if (ev.kind === "actor.enroll") {
    if (b.role === "herder_agent") {
      const p = b.parent ? m.actors.get(b.parent) : undefined;
      if (!p || p.role !== "cooperative" || p.index >= i) fail("inconsistent_story", `herder agent ${b.id} needs an enrolled cooperative`);
    } else if (b.parent !== undefined) fail("inconsistent_story", "only herder agents name a parent cooperative");
  } else if (ev.kind === "device.register") {
    const owner = m.actors.get(b.owner);
    if (owner.index >= i || !OWNERS.includes(owner.role)) fail("inconsistent_story", `terminal ${b.device} is filed for an unfit owner`);
    if (actor.role === "banner_office" && owner.banner !== actor.banner) fail("not_authorised", "a banner office files terminals for its own banner only");
  } else if (ev.kind === "tags.issue") {
    const rcpt = m.actors.get(b.to);
    if (rcpt.index >= i || !["banner_office", "cooperative"].includes(rcpt.role) || b.first.slice(1, 7) !== rcpt.banner) {
      fail("inconsistent_story", `ear tags ${b.first}.. went to an unfit recipient ${rcpt.id}`);
    }
  } else if (ev.kind === "custody.ship") {
    const rcpt = m.actors.get(b.to);
    if (rcpt.id === ev.actor || rcpt.index >= i || !CUSTODIANS.includes(rcpt.role)) {
      fail("inconsistent_story", `shipment ${b.shipment} goes to an unfit addressee`);
    }
  }
  return jobs;
}

/**
 * Verify a label proof bundle (its JSON form, as GET /v1/labels/<label>/proof answers).
 *
 * options: `label` (the label the page is for), `fingerprint` (hex prefix of the trusted
 * genesis hash from the QR link, or null: then the bundle's own genesis hash is taken
 * as the anchor and report.anchor says "server"), `genesis`: the genesis document's
 * JSON (GET /v1/genesis; untrusted, it must hash to the bundle's genesis_hash), needed
 * unless the bundle embeds it (v1, or v2/v3 with ?genesis=1; if both are there they must
 * be the same document), `ed25519`: "webcrypto" (check Ed25519 with WebCrypto), "js" (check
 * it in JavaScript, where WebCrypto lacks it) or "defer" (leave Ed25519 signatures to the
 * server's verdict; report.deferred counts them).
 *
 * Returns {anchor, genesisHash, chain, checkpoint, events, signatures, deferred,
 * recalls_complete, story}: recalls_complete is true for a v3 bundle, whose story.recalls
 * are then proven to be every recall of the label, its carcass and its lamb up to the
 * checkpoint (none at all when empty); throws VerificationError with verify/errors.py's
 * code otherwise.
 */
export async function verifyLabelBundle(json, { label, fingerprint = null, genesis = null, ed25519 = "webcrypto" } = {}) {
  if (typeof crypto === "undefined" || !crypto.subtle) fail("no_crypto", "this page has no WebCrypto (it needs HTTPS)");
  const fp = fingerprint === null ? null : parseFingerprint(fingerprint);
  let b;
  let given = null;
  try {
    b = parseBundle(json);
  } catch (e) {
    if (e instanceof VerificationError && e.code === "malformed") fail("malformed_bundle", e.message);
    throw e;
  }
  try {
    given = genesis === null ? null : genesisFromJson(genesis);
  } catch (e) {
    if (e instanceof VerificationError && e.code === "malformed") fail("wrong_genesis", `the genesis document is malformed: ${e.message}`);
    throw e;
  }
  // 2. the anchor
  const claimed = bytesToHex(b.genesisHash);
  if (fp !== null && !claimed.startsWith(fp)) fail("fingerprint_mismatch", "the server's chain is not the chain the label's QR code names");
  if (b.genesis === null && given === null) fail("no_genesis", "the bundle references its genesis by hash, and no genesis document was given");
  // the embedded genesis is exactly (byte for byte, once encoded) the one given, or with
  // none given exactly the canonical form of a well-formed genesis
  const g = b.genesis === null ? given : given ?? embeddedGenesis(b.genesis.json);
  if (b.genesis !== null && !sameEncoding(b.genesis.value, g)) {
    fail("wrong_genesis", given === null ? "the genesis document in the bundle is not in its canonical form"
      : "the genesis document in the bundle is not the one given");
  }
  if (!bytesEqual(await genesisHash(g), b.genesisHash)) fail("wrong_genesis", "the genesis document does not hash to the bundle's genesis_hash");
  if (b.label !== label) fail("wrong_label", `the bundle is for label ${b.label}, not ${label}`);
  const h = b.header;
  const cert = b.certificate;
  if (h.chain !== g.chain) fail("chain_mismatch", `the checkpoint is of chain ${h.chain}, not ${g.chain}`);
  if (!bytesEqual(h.validators, await validatorsHash(g.validators))) fail("chain_mismatch", "the checkpoint names another validator set than genesis");
  if (h.height < 1 || h.log_size < 1) fail("bad_certificate", "a checkpoint is a committed block (height and log size at least 1)");
  if (h.time < g.time) fail("bad_certificate", "the checkpoint's time is before genesis");
  if (!g.validators.some((v) => v.name === h.proposer)) fail("bad_certificate", `the checkpoint's proposer ${h.proposer} is not a validator`);
  const recallMap = g.params.state_root === RECALL_MAP;
  if (recallMap) {
    if (b.format !== FORMAT) {
      fail("incomplete_bundle", `this chain commits its recalls in every header; a ${b.format} bundle cannot prove that no recall was left out`);
    }
    if (!hasOwn(h, "state_root")) fail("bad_certificate", "the checkpoint carries no state_root, which this chain's genesis requires");
  } else {
    if (b.format === FORMAT) fail("malformed_bundle", "the bundle has a recall proof for a chain whose genesis defines no recall map");
    if (hasOwn(h, "state_root")) fail("bad_certificate", "the checkpoint carries a state_root, which no rule of this chain defines");
  }
  const blockHash = await headerHash(h);
  if (cert.block === null) { // v3: the header gives the certificate's height and block
    cert.height = h.height;
    cert.block = blockHash;
  }
  if (cert.height !== h.height) fail("bad_certificate", `the certificate is for height ${cert.height}, the header is ${h.height}`);
  if (!bytesEqual(cert.block, blockHash)) fail("bad_certificate", "the certificate is for another block than the checkpoint header");
  const byName = new Map(g.validators.map((v) => [v.name, v]));
  const names = cert.precommits.map((p) => p.validator);
  if (names.some((n) => !byName.has(n))) fail("bad_certificate", "the certificate names a validator genesis does not know");
  for (let k = 1; k < names.length; k++) {
    if (compareBytes(utf8(names[k - 1]), utf8(names[k])) >= 0) fail("bad_certificate", "certificate precommits must be sorted by validator, each once");
  }
  const total = g.validators.reduce((s, v) => s + v.power, 0);
  const power = names.reduce((s, n) => s + byName.get(n).power, 0);
  if (!(3 * power > 2 * total)) fail("insufficient_signatures", `precommits name ${power} of ${total} voting power; more than 2/3 needed`);
  // 3. placement: shapes first, then hashing
  let prev = -1;
  for (const e of b.entries) {
    if (e.index <= prev) fail("malformed_bundle", "events must be in strictly ascending leaf order");
    prev = e.index;
    if (e.index >= h.log_size) fail("inclusion_failed", `leaf ${e.index} is not below the checkpoint's log size ${h.log_size}`);
    if (b.multiproof !== null) continue;
    const want = inclusionProofLength(e.index, h.log_size);
    if (e.proof.length !== want) fail("inclusion_failed", `the proof of leaf ${e.index} has ${e.proof.length} hashes, not ${want}`);
  }
  if (b.multiproof !== null) {
    const want = multiproofLength(b.entries.map((e) => e.index), h.log_size);
    if (b.multiproof.length !== want) {
      fail("inclusion_failed", `the multiproof has ${b.multiproof.length} hashes; these ${b.entries.length} leaves need ${want}`);
    }
    const leaves = [];
    for (const e of b.entries) leaves.push({ index: e.index, hash: await leafHash(e.leaf) });
    const root = await rootFromMultiproof(leaves, h.log_size, b.multiproof);
    if (!bytesEqual(root, h.log_root)) fail("inclusion_failed", "the events are not in the checkpoint's log");
  } else {
    for (const e of b.entries) {
      const root = await rootFromInclusionProof(await leafHash(e.leaf), e.index, h.log_size, e.proof);
      if (!bytesEqual(root, h.log_root)) fail("inclusion_failed", `leaf ${e.index} is not in the checkpoint's log`);
    }
  }
  // 4. parse every leaf
  const events = [];
  const ids = new Set();
  const latest = h.time + g.params.max_future_ms;
  for (const e of b.entries) {
    let ev;
    try {
      ev = await parseLeaf(e.leaf);
    } catch (err) {
      if (err instanceof VerificationError) fail("bad_event", `leaf ${e.index} is not a well-formed signed event: ${err.message}`);
      throw err;
    }
    if (ev.chain !== g.chain) fail("bad_event", `leaf ${e.index} is an event of chain ${ev.chain}`);
    if (!(g.time <= ev.time && ev.time <= latest)) fail("bad_event", `leaf ${e.index}'s time lies outside genesis..checkpoint`);
    const id = bytesToHex(ev.id);
    if (ids.has(id)) fail("bad_event", `leaf ${e.index} repeats an event`);
    ids.add(id);
    events.push({ ...ev, index: e.index, leaf: e.leaf });
  }
  // 5. the story (v3: with every recall of it proven), 6. membership, 7. exactness
  const story = buildStory(b.label, events);
  if (b.recalls !== null) {
    const byLeaf = new Map(events.map((e) => [e.index, e.leaf]));
    const value = await recallChain(story.recallIndexes.map((i) => byLeaf.get(i)));
    await checkRecallProof(b.recalls, b.label, value, h.state_root);
  }
  const m = await buildMembers(g, events.filter((e) => MEMBERSHIP.includes(e.kind)));
  const byIndex = new Map(events.map((e) => [e.index, e]));
  const needed = closure(story.indexes, byIndex, m);
  const extra = events.filter((e) => !needed.has(e.index));
  if (extra.length) fail("unexpected_event", `leaf ${extra[0].index} (${extra[0].kind}) is not part of this label's proof`);
  const jobs = [];
  for (const ev of events) jobs.push(...checkAuthorised(ev, m, g));
  const tagger = m.actors.get(story.tg.actor);
  const rcpt = m.actors.get(story.is.body.to);
  const taggerOk = rcpt.role === "cooperative" ? tagger.id === rcpt.id || tagger.parent === rcpt.id : tagger.banner === rcpt.banner;
  if (!taggerOk) fail("inconsistent_story", `ear tag ${story.tag} was issued to ${rcpt.id}, not to the tagger's cooperative or banner`);
  // 8. signatures, last: the validators' precommits, then every event's
  const vote = voteBytes("precommit", g.chain, cert.height, cert.round, cert.block);
  let deferred = 0;
  let checked = 0;
  const check = async (job, code) => {
    if (job.alg === "ed25519" && ed25519 === "defer") {
      deferred++;
      return;
    }
    if (!(await verifySignature(job.alg, job.pub, job.message, job.sig, ed25519))) {
      fail(code, `the signature on the ${job.what} does not verify`);
    }
    checked++;
  };
  for (const p of cert.precommits) {
    const v = byName.get(p.validator);
    await check({ what: `precommit of ${p.validator}`, alg: v.alg, pub: v.pub, message: vote, sig: p.sig }, "bad_certificate");
  }
  for (const job of jobs) await check(job, "bad_event_signature");
  return {
    anchor: fp === null ? "server" : "link",
    genesisHash: claimed,
    chain: g.chain,
    checkpoint: { height: h.height, time: h.time, log_size: h.log_size, hash: bytesToHex(blockHash) },
    events: events.length,
    signatures: checked,
    deferred,
    recalls_complete: b.recalls !== null,
    story: report(story, m),
  };
}

function report(story, m) {
  const { li, sl, tg, entry } = story;
  const tagger = m.actors.get(tg.actor);
  const coopId = tagger.role === "herder_agent" && tagger.parent ? tagger.parent : tagger.id;
  const plant = m.actors.get(li.actor);
  const nameOf = (id) => m.actors.get(id)?.name ?? "";
  return {
    label: entry.label,
    cut: entry.cut,
    net_mass_g: entry.net_mass_g,
    packed: entry.packed,
    check_commitment: bytesToHex(entry.check),
    labelled_at: li.time,
    carcass: story.carcass,
    tag: story.tag,
    chip: tg.body.chip ?? null,
    lamb: {
      banner: tagger.banner,
      sumu: tg.body.sumu,
      born: tg.body.born,
      breed: tg.body.breed,
      sex: tg.body.sex,
      cooperative: coopId,
      cooperative_name: nameOf(coopId),
      tagged_at: tg.time,
      tagged_by: tagger.id,
    },
    plant: { id: plant.id, name: plant.name, banner: plant.banner },
    slaughter: {
      date: sl.body.date,
      quarantine_cert: sl.body.quarantine_cert,
      carcass_mass_g: sl.body.carcass_mass_g,
      time: sl.time,
    },
    custody: story.hops.map((hop) => ({
      ...hop,
      fromName: nameOf(hop.from),
      fromRole: m.actors.get(hop.from)?.role ?? "",
      toName: nameOf(hop.to),
      toRole: m.actors.get(hop.to)?.role ?? "",
    })),
    recalls: story.recalls,
    events: { issue: bytesToHex(li.id), slaughter: bytesToHex(sl.id), tag: bytesToHex(tg.id) },
  };
}
