'use strict';
// Settings from the environment and the HTTP mapping of return values.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { handle, settingsFromEnv, toHttpResponse } = require('../function');

test('settings come from KF_* with the Python runtime defaults', () => {
  const s = settingsFromEnv({ KF_TOPIC: 'upper', KF_CONCURRENCY: '4', KF_TIMEOUT_S: '2.5' });
  assert.equal(s.channel, 'upper');
  assert.equal(s.concurrency, 4);
  assert.equal(s.timeoutMs, 2500);
  assert.equal(s.maxAttempts, 5);
});

test('a wrong setting names the variable', () => {
  assert.throws(() => settingsFromEnv({}), /KF_TOPIC is not set/);
  assert.throws(() => settingsFromEnv({ KF_TOPIC: 'a b' }), /KF_TOPIC must be/);
  assert.throws(() => settingsFromEnv({ KF_TOPIC: 't', KF_MAX_ATTEMPTS: '0' }), /KF_MAX_ATTEMPTS must be at least 1/);
  assert.throws(() => settingsFromEnv({ KF_TOPIC: 't', KF_CONCURRENCY: 'eight' }), /KF_CONCURRENCY must be an integer/);
});

test('return values map to HTTP as in the Python runtime', () => {
  assert.equal(toHttpResponse(null).status, 204);
  assert.equal(toHttpResponse('hi').headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(toHttpResponse({ a: 1 }).body.toString(), '{"a":1}');
  assert.equal(toHttpResponse({ status: 201 }).status, 201);
});

test('the example upper-cases text and fails on "fail"', async () => {
  const ctx = { kind: 'request', attempt: 1 };
  assert.equal(await handle('hello', ctx), 'HELLO');
  await assert.rejects(handle('fail', ctx), /asked to fail/);
  assert.deepEqual(await handle({ conformance: 'echo', value: [1] }, { ...ctx, attempt: 2 }), { value: [1], attempt: 2 });
});
