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

// -- lifespan -----------------------------------------------------------------------------------

const { Runtime } = require('../function');

const nullBus = { stopReading() {}, async close() {} };
const runtimeWith = (lifespan, env = {}) =>
  new Runtime(settingsFromEnv({ KF_TOPIC: 'upper', ...env }), handle, { lifespan, bus: nullBus });

test('the lifespan sets up state before messages and its cleanup runs at the stop', async () => {
  const events = [];
  const runtime = runtimeWith(async (service) => {
    service.state.pool = 'the-pool';
    events.push(`startup ${service.topic}`);
    return async () => { events.push('shutdown'); };
  });
  await runtime.startup();
  assert.equal(runtime.state.pool, 'the-pool');
  await runtime.stop();
  assert.deepEqual(events, ['startup upper', 'shutdown']);
  assert.equal(runtime.exitCode, 0);
});

test('a startup that throws or hangs is LifespanFailed naming why', async () => {
  const broken = runtimeWith(async () => { throw new Error('db:5432 refused'); });
  await assert.rejects(broken.startup(), { name: 'LifespanFailed', message: /startup failed: Error: db:5432 refused/ });
  const hangs = runtimeWith(() => new Promise(() => {}), { KF_STARTUP_TIMEOUT_S: '0.05' });
  await assert.rejects(hangs.startup(), { name: 'LifespanFailed', message: /startup took longer than 0.05 s/ });
});

test('a shutdown that throws or hangs makes the exit code 1', async () => {
  for (const cleanup of [async () => { throw new Error('closed twice'); }, () => new Promise(() => {})]) {
    const runtime = runtimeWith(async () => cleanup, { KF_SHUTDOWN_TIMEOUT_S: '0.05' });
    await runtime.startup();
    await runtime.stop();
    assert.equal(runtime.exitCode, 1);
  }
});
