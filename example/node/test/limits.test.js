'use strict';
// The decoding limits (docs/protocol.md, "Limits"): the same as client/wire.py's, each a
// DecodeError naming the field, never a RangeError (stack overflow) or a process out of
// memory.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const wire = require('../wire');

const str = (text) => {
  const bytes = Buffer.from(text, 'utf8');
  return Buffer.concat([Buffer.from([0xa0 | bytes.length]), bytes]);
};

// A msgpack map of str keys to raw msgpack values.
function body(fields) {
  const entries = Object.entries(fields).map(([k, v]) => Buffer.concat([str(k), v]));
  return new Uint8Array(Buffer.concat([Buffer.from([0x80 | entries.length]), ...entries]));
}

const BASE = { v: Buffer.from([1]), id: str('a'), kind: str('event') };
const deepArrays = (levels) => Buffer.concat([Buffer.alloc(levels, 0x91), Buffer.from([0xc0])]);
const deepMaps = (levels) =>
  Buffer.concat([...Array(levels).fill(Buffer.concat([Buffer.from([0x81]), str('k')])), Buffer.from([0xc0])]);

function refuses(bytes, message) {
  assert.throws(() => wire.decode(bytes), (e) => {
    assert.ok(e instanceof wire.DecodeError, `${e.name}: ${e.message}`);
    assert.ok(e.message.includes(message), `"${e.message}" lacks "${message}"`);
    return true;
  });
}

test('a payload 64 levels deep decodes', () => {
  let value = wire.decode(body({ ...BASE, payload: deepArrays(64) })).payload;
  let depth = 0;
  while (Array.isArray(value)) [depth, value] = [depth + 1, value[0]];
  assert.equal(depth, 64);
});

for (const [name, nest] of [['arrays', deepArrays], ['maps', deepMaps]]) {
  for (const levels of [65, 100000]) {
    test(`a payload of ${name} nested ${levels} deep is a DecodeError naming the field`, () => {
      refuses(body({ ...BASE, payload: nest(levels) }), "envelope field 'payload' is nested deeper than 64 levels");
    });
  }
}

test('deep headers and a deep body are DecodeErrors, not stack overflows', () => {
  refuses(body({ ...BASE, headers: deepMaps(100000) }), "envelope field 'headers' is nested deeper than 64");
  refuses(new Uint8Array(deepArrays(100000)), 'body is nested deeper than 64 levels');
});

test('a body of too many elements is refused before it is built', () => {
  const n = 1100000;
  const count = Buffer.from([0xdd, 0, 0, 0, 0]);
  count.writeUInt32BE(n, 1);
  const payload = Buffer.concat([count, Buffer.alloc(n, 0x90)]);
  refuses(body({ ...BASE, payload }), 'body has more than 1000000 elements');
});

test('an array header longer than the limit is refused', () => {
  refuses(body({ ...BASE, payload: Buffer.from([0xdd, 0x7f, 0xff, 0xff, 0xff]) }), 'more than 1000000 elements');
});

test('extension types are refused, naming the field', () => {
  refuses(body({ ...BASE, payload: Buffer.from([0xd4, 5, 0]) }), "envelope field 'payload' holds a msgpack extension type (ext 5)");
  refuses(body({ ...BASE, time: Buffer.from([0xd6, 0xff, 0, 0, 0, 1]) }), "envelope field 'time' holds");
});

test('invalid UTF-8 and non-str keys name the field', () => {
  refuses(body({ ...BASE, topic: Buffer.from([0xa2, 0xff, 0xfe]) }), "envelope field 'topic' is not valid UTF-8");
  refuses(body({ ...BASE, payload: Buffer.from([0x81, 0x01, 0x01]) }), "got a key of type int, in envelope field 'payload'");
});

test('an http-request query that is false is refused, as nil is the only default', () => {
  const payload = body({ method: str('GET'), path: str('/'), query: Buffer.from([0xc2]) });
  refuses(body({ ...BASE, kind: str('http-request'), payload: Buffer.from(payload) }), "http-request 'query' must be");
});

test('encode refuses a payload no consumer would decode', () => {
  let value = null;
  for (let i = 0; i < 65; i++) value = [value];
  const env = { id: 'a', topic: 't', kind: 'event', time: 0, headers: {} };
  assert.throws(() => wire.encode({ ...env, payload: value }), (e) => {
    assert.ok(e instanceof wire.EncodeError, `${e.name}: ${e.message}`);
    assert.match(e.message, /envelope field 'payload' is nested deeper than 64 levels/);
    return true;
  });
  assert.throws(() => wire.encode({ ...env, payload: new Array(1000001).fill([0]) }), wire.EncodeError);
  assert.equal(wire.decode(wire.encode({ ...env, payload: [[[1]]] })).payload[0][0][0], 1);
});
