'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { declare } = require('../declare');

test('declare puts plain, detached declarations on the handler and returns it', () => {
  const options = { topic: 'orders', routes: ['/orders/'], scaling: { min: 0, max: 5 } };
  const handler = async (payload) => payload;
  assert.equal(declare(options, handler), handler);
  assert.deepEqual(handler.kubefuncs, options);
  options.scaling.max = 9; // a later change of the caller's object does not leak in
  assert.equal(handler.kubefuncs.scaling.max, 5);
});

test('declare refuses what is not a handler or not an object of fields', () => {
  assert.throws(() => declare({ topic: 'x' }, 'nope'), /handler must be a function/);
  assert.throws(() => declare(['x'], () => 1), /options must be an object/);
  assert.throws(() => declare(null, () => 1), /options must be an object/);
});
