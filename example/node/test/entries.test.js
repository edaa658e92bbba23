'use strict';
// Stream entries that kubefuncs did not write become messages marked malformed (the runtime
// dead-letters them), never an exception in the read loop.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { message } = require('../bus');

const b = (text) => Buffer.from(text);

test('an entry with a numeric attempt field counts it', () => {
  const m = message('s', b('1-0'), [b('m'), b('body'), b('a'), b('2')], 1);
  assert.equal(m.attempt, 3);
  assert.equal(m.malformed, undefined);
  assert.equal(m.body.toString(), 'body');
});

for (const bad of ['x', '-1', '1e3', '1.5', '', ' 1', '99999999999999999999']) {
  test(`an attempt field ${JSON.stringify(bad)} marks the message malformed`, () => {
    const m = message('s', b('1-0'), [b('m'), b('body'), b('a'), b(bad)], 1);
    assert.match(m.malformed, /attempt field .* is not an integer/);
    assert.equal(m.attempt, 1); // a number the dead letter can carry
  });
}

test('an entry without m is malformed; an odd field list does not throw', () => {
  assert.equal(message('s', b('1-0'), [b('x'), b('y')], 1).malformed, 'entry has no m field');
  assert.equal(message('s', b('1-0'), [b('m')], 1).malformed, 'entry has no m field');
});
