'use strict';
// Wire contract v1 (docs/protocol.md): decode + validate an envelope, encode one.
// The same rules as client/wire.py; tests/vectors/envelopes.json proves they agree.

const crypto = require('node:crypto');
const { Decoder, encode: pack } = require('@msgpack/msgpack');

const VERSION = 1;
const MSGPACK = 'application/msgpack';
// The decoding limits (docs/protocol.md, "Limits"), the same as client/wire.py's.
const MAX_BODY_BYTES = 64 * 1024 * 1024;
const MAX_DEPTH = 64; // maps and arrays around a value, counted from the envelope field
const MAX_ELEMENTS = 1000000; // array items + map keys and values in one body

class DecodeError extends Error {
  get name() { return 'DecodeError'; }
}

class EncodeError extends Error {
  get name() { return 'EncodeError'; }
}

const KEY_ERROR =
  'payload maps must have string keys (every map key in a message), got a key of type ';

// The contract wants every msgpack str to be valid UTF-8, every map key a str, no
// extension types, and the limits above. @msgpack/msgpack replaces bad UTF-8 silently and
// has no depth or total limit, so StrictDecoder checks them at the hooks the 3.x Decoder
// calls (pinned in package.json): its stack is an array, not recursion, so a deep body
// costs no call stack before the limit stops it.
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

class StrictDecoder extends Decoder {
  constructor() {
    super();
    this.mapKeyConverter = (key) => this.checkKey(key); // the base class sets its own
  }

  decode(body) {
    this.elements = 0;
    return super.decode(body);
  }

  // The envelope field being read: the key of the outermost map, if it is a map.
  where() {
    const outer = this.stack.length > 0 ? this.stack.stack[0] : null;
    if (outer && outer.type === 'map_value') return `envelope field '${outer.key}'`;
    return null;
  }

  admit(elements) {
    if (this.stack.length > MAX_DEPTH) {
      const where = this.where() || 'body';
      throw new DecodeError(`${where} is nested deeper than ${MAX_DEPTH} levels of maps and arrays`);
    }
    this.elements += elements;
    if (this.elements > MAX_ELEMENTS) {
      throw new DecodeError(
        `body has more than ${MAX_ELEMENTS} elements (array items, map keys and values)`,
      );
    }
  }

  pushMapState(size) {
    this.admit(2 * size);
    super.pushMapState(size);
  }

  pushArrayState(size) {
    this.admit(size);
    super.pushArrayState(size);
  }

  decodeUtf8String(byteLength, headerOffset) {
    const start = this.pos + headerOffset;
    if (start + byteLength <= this.bytes.byteLength) {
      try {
        strictUtf8.decode(this.bytes.subarray(start, start + byteLength));
      } catch (e) {
        const where = this.where() || 'a string';
        throw new DecodeError(`body is not valid msgpack: ${where} is not valid UTF-8 (${e.message})`);
      }
    }
    return super.decodeUtf8String(byteLength, headerOffset);
  }

  decodeExtension(size, headOffset) {
    const code = this.view.getInt8(this.pos + headOffset);
    const where = this.where() || 'body';
    throw new DecodeError(`${where} holds a msgpack extension type (ext ${code}): the contract has none`);
  }

  checkKey(key) {
    if (typeof key === 'string') return key;
    const where = this.stack.length > 1 ? `, in ${this.where()}` : ', in the envelope map';
    throw new DecodeError(KEY_ERROR + typeName(key) + where);
  }
}

// Payloads are JSON-compatible: every map key is a str (bin keys included in the ban).
const decoder = new StrictDecoder();

const isMap = (x) => x !== null && typeof x === 'object' && x.constructor === Object;
const isInt = (x) => Number.isInteger(x);
const isBytes = (x) => x instanceof Uint8Array;

function decode(body) {
  if (!isBytes(body)) throw new DecodeError('message body must be bytes');
  if (body.length > MAX_BODY_BYTES) {
    throw new DecodeError(`message body is ${body.length} bytes, over the ${MAX_BODY_BYTES} limit`);
  }
  let raw;
  try {
    raw = decoder.decode(body);
  } catch (e) {
    if (e instanceof DecodeError) throw e;
    throw new DecodeError(`body is not valid msgpack: ${e.message}`);
  }
  return fromWire(raw);
}

// The envelope in its wire form with defaults applied and unknown fields dropped.
function fromWire(raw) {
  if (!isMap(raw)) throw new DecodeError(`envelope must be a msgpack map, got ${typeName(raw)}`);
  if (raw.v !== VERSION) {
    // JavaScript numbers cannot tell 1.0 from 1: a float 1.0 passes here (docs/protocol.md, 1)
    throw new DecodeError(
      `unsupported envelope version ${short(raw.v)} in field 'v': this consumer speaks v1 (the integer 1)`,
    );
  }
  const kind = str(raw, 'kind', true);
  return {
    v: VERSION,
    id: str(raw, 'id', true),
    topic: str(raw, 'topic') || '',
    kind,
    time: int(raw, 'time') || 0,
    content_type: str(raw, 'content_type') || MSGPACK,
    reply_to: str(raw, 'reply_to'),
    correlation_id: str(raw, 'correlation_id'),
    deadline: int(raw, 'deadline'),
    headers: strMap(raw.headers, 'headers'),
    payload: payload(kind, raw.payload),
  };
}

function str(raw, key, required = false) {
  const value = raw[key];
  if (value === undefined || value === null) {
    if (required) throw new DecodeError(`envelope field '${key}' is missing`);
    return null;
  }
  if (typeof value !== 'string' || (required && !value)) {
    const what = required ? 'a non-empty string' : 'a string or nil';
    throw new DecodeError(`envelope field '${key}' must be ${what}`);
  }
  return value;
}

function int(raw, key) {
  const value = raw[key];
  if (value === undefined || value === null) return null;
  if (!isInt(value)) {
    throw new DecodeError(`envelope field '${key}' must be an integer (unix ms) or nil`);
  }
  return value;
}

function strMap(value, where) {
  if (value === undefined || value === null) return {};
  if (!isMap(value) || !Object.values(value).every((v) => typeof v === 'string')) {
    throw new DecodeError(`${where} must be a map of string to string`);
  }
  return value;
}

function bytes(value, where) {
  if (value === undefined || value === null) return new Uint8Array(0);
  if (typeof value === 'string') return new Uint8Array(Buffer.from(value, 'utf8'));
  if (!isBytes(value)) throw new DecodeError(`${where} must be bytes or a string`);
  return value;
}

function requireMap(p, kind) {
  if (!isMap(p)) throw new DecodeError(`payload of a '${kind}' message must be a map`);
  return p;
}

function payload(kind, p) {
  if (kind === 'http-request') return httpRequest(requireMap(p, kind));
  if (kind === 'http-response') return httpResponse(requireMap(p, kind));
  if (kind === 'error') return errorInfo(requireMap(p, kind));
  return p === undefined ? null : p;
}

function httpRequest(p) {
  if (typeof p.method !== 'string' || typeof p.path !== 'string') {
    throw new DecodeError("http-request payload needs string 'method' and 'path'");
  }
  const query = p.query ?? '';
  if (typeof query !== 'string') {
    throw new DecodeError("http-request 'query' must be the raw query string");
  }
  return {
    method: p.method,
    path: p.path,
    query,
    headers: strMap(p.headers, 'http-request headers'),
    body: bytes(p.body, 'http-request body'),
  };
}

function httpResponse(p) {
  const status = 'status' in p ? p.status : 200;
  if (!isInt(status) || status < 100 || status > 599) {
    throw new DecodeError(`http-response 'status' must be an integer 100-599, got ${status}`);
  }
  return {
    status,
    headers: strMap(p.headers, 'http-response headers'),
    body: bytes(p.body, 'http-response body'),
  };
}

function errorInfo(p) {
  const message = 'message' in p ? p.message : '';
  if (typeof p.type !== 'string' || typeof message !== 'string') {
    throw new DecodeError("error payload needs string 'type' and 'message'");
  }
  if (p.status !== undefined && p.status !== null && !isInt(p.status)) {
    throw new DecodeError("error 'status' must be an integer");
  }
  const out = { type: p.type, message, retryable: Boolean(p.retryable) };
  if (p.status !== undefined && p.status !== null) out.status = p.status;
  return out;
}

// A value for an error message: never the whole of a big one.
function short(x) {
  if (typeof x === 'string') return JSON.stringify(x.slice(0, 60));
  if (typeof x === 'number' || typeof x === 'boolean' || typeof x === 'bigint') return String(x);
  return typeName(x);
}

function typeName(x) {
  if (x === null || x === undefined) return 'nil';
  if (Array.isArray(x)) return 'array';
  if (isBytes(x)) return 'bin';
  if (typeof x === 'number') return Number.isInteger(x) ? 'int' : 'float';
  if (typeof x === 'boolean') return 'bool';
  return isMap(x) ? 'map' : typeof x;
}

// -- encoding ----------------------------------------------------------------------------

// A Buffer: @msgpack/msgpack returns a view into a larger ArrayBuffer, which Redis clients
// would send whole.
function encode(env) {
  for (const [field, value] of [['headers', env.headers], ['payload', env.payload]]) {
    const problem = tooDeepOrBig(value);
    if (problem) throw new EncodeError(`cannot encode the envelope: envelope field '${field}' ${problem}`);
  }
  const bytes = pack({
    v: VERSION,
    id: env.id,
    topic: env.topic,
    kind: env.kind,
    time: env.time,
    content_type: env.content_type || MSGPACK,
    reply_to: env.reply_to ?? null,
    correlation_id: env.correlation_id ?? null,
    deadline: env.deadline ?? null,
    headers: env.headers || {},
    payload: env.payload ?? null,
  });
  if (bytes.byteLength > MAX_BODY_BYTES) {
    throw new EncodeError(
      `cannot encode the envelope: its body would be ${bytes.byteLength} bytes, over the ${MAX_BODY_BYTES} limit`,
    );
  }
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

// What the decoder would refuse in one field's value (depth, elements), found without
// recursion; null when it is fine.
function tooDeepOrBig(value) {
  const stack = [[value, 1]];
  let elements = 0;
  while (stack.length > 0) {
    const [node, depth] = stack.pop();
    const children = Array.isArray(node) ? node : isMap(node) ? Object.values(node) : null;
    if (children === null || children.length === 0) continue;
    if (depth > MAX_DEPTH) return `is nested deeper than ${MAX_DEPTH} levels of maps and arrays`;
    elements += Array.isArray(node) ? children.length : 2 * children.length;
    if (elements > MAX_ELEMENTS) return `has more than ${MAX_ELEMENTS} elements`;
    for (const child of children) stack.push([child, depth + 1]);
  }
  return null;
}

const newId = () => crypto.randomBytes(16).toString('hex');

// The reply to `request`: addressed to its reply_to, correlated by its id, carrying only
// the W3C trace context headers.
function replyFor(request, payload, kind = 'reply') {
  const headers = {};
  for (const key of ['traceparent', 'tracestate']) {
    if (request.headers[key] !== undefined) headers[key] = request.headers[key];
  }
  return {
    id: newId(),
    topic: request.reply_to,
    kind,
    time: Date.now(),
    content_type: MSGPACK,
    correlation_id: request.id,
    headers,
    payload,
  };
}

const expired = (env, nowMs = Date.now()) => env.deadline !== null && nowMs > env.deadline;

module.exports = {
  DecodeError,
  EncodeError,
  decode,
  encode,
  fromWire,
  replyFor,
  expired,
  isMap,
  MSGPACK,
  MAX_BODY_BYTES,
  MAX_DEPTH,
  MAX_ELEMENTS,
};
