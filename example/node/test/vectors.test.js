'use strict';
// The protocol's test vectors (tests/vectors/envelopes.json), checked by the Node decoder.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { test } = require('node:test');
const { Decoder } = require('@msgpack/msgpack');
const wire = require('../wire');

const VECTORS = JSON.parse(
  fs.readFileSync(path.join(__dirname, '../../../tests/vectors/envelopes.json'), 'utf8'),
);

// Values in the vectors' JSON form: bytes as {"$bin": "<base64>"}.
function toJson(value) {
  if (value instanceof Uint8Array) return { $bin: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(toJson);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toJson(v)]));
  }
  return value;
}

function fromJson(value) {
  if (Array.isArray(value)) return value.map(fromJson);
  if (value !== null && typeof value === 'object') {
    if (Object.keys(value).length === 1 && '$bin' in value) {
      return new Uint8Array(Buffer.from(value.$bin, 'base64'));
    }
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fromJson(v)]));
  }
  return value;
}

const bytesOf = (hex) => new Uint8Array(Buffer.from(hex, 'hex'));

test('the vectors cover every kind', () => {
  const kinds = new Set(VECTORS.filter((v) => v.valid).map((v) => v.json.kind));
  assert.deepEqual([...kinds].sort(), ['error', 'event', 'http-request', 'http-response', 'reply', 'request']);
});

for (const vector of VECTORS.filter((v) => v.valid)) {
  test(`valid: ${vector.name}`, () => {
    const body = bytesOf(vector.hex);
    assert.deepEqual(toJson(new Decoder().decode(body)), vector.json);
    const env = wire.decode(body);
    assert.deepEqual(toJson(env), vector.envelope);
    const again = wire.encode(fromJson(vector.envelope));
    assert.deepEqual(toJson(wire.decode(again)), vector.envelope);
    if (vector.canonical) assert.equal(Buffer.from(again).toString('hex'), vector.hex);
  });
}

for (const vector of VECTORS.filter((v) => !v.valid)) {
  test(`invalid: ${vector.name}`, () => {
    assert.throws(() => wire.decode(bytesOf(vector.hex)), (e) => {
      assert.ok(e instanceof wire.DecodeError, `${e.name}: ${e.message}`);
      assert.ok(e.message.includes(vector.error), `"${e.message}" lacks "${vector.error}"`);
      return true;
    });
  });
}

test('replyFor correlates, addresses and keeps only the trace context', () => {
  const request = wire.decode(bytesOf(VECTORS.find((v) => v.json.kind === 'request').hex));
  const reply = wire.replyFor(request, 'HI');
  assert.equal(reply.topic, request.reply_to);
  assert.equal(reply.correlation_id, request.id);
  assert.deepEqual(Object.keys(reply.headers).sort(), ['traceparent', 'tracestate']);
  assert.equal(wire.decode(wire.encode(reply)).payload, 'HI');
});

test('expired only strictly after the deadline', () => {
  assert.equal(wire.expired({ deadline: null }, 10 ** 15), false);
  assert.equal(wire.expired({ deadline: 1000 }, 1000), false);
  assert.equal(wire.expired({ deadline: 1000 }, 1001), true);
});
