'use strict';
// Batch handlers on an in-memory bus: lists in, a result (or an Error) per message out,
// a throw failing every message by its own attempts, expired ones never seen.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const wire = require('../wire');
const { Runtime, settingsFromEnv } = require('../function');

// The Bus methods the runtime calls; what it settled, per message id.
class MemoryBus {
  constructor(bodies) {
    this.queue = bodies.map((body, i) => ({ id: `m${i}`, body, attempt: 1 }));
    this.settled = [];
    this.replies = [];
    this.visibilityMs = 60000;
    this.connected = true;
  }
  async ensureGroups() {}
  async moveDue() {}
  async fetch(free) {
    if (this.queue.length === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    return this.queue.splice(0, free);
  }
  async ack(m) { this.settled.push(['ack', m.id]); }
  async retry(m) { this.settled.push(['retry', m.id]); }
  async deadLetter(m, reason) { this.settled.push(['dead', m.id, reason]); }
  async touch() {}
  async reply(address, body) { this.replies.push(wire.decode(body)); }
  stopReading() {}
  async close() {}
}

const envelope = (payload, extra = {}) => wire.encode({
  v: 1, id: `id-${JSON.stringify(payload)}`, topic: 't', kind: 'request', time: Date.now(),
  reply_to: 'inbox', headers: {}, payload, ...extra,
});

async function runUntil(runtime, bus, settledCount) {
  const running = runtime.run();
  const deadline = Date.now() + 5000;
  while (bus.settled.length < settledCount && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  await runtime.stop();
  await running;
}

test('a batch handler answers each message on its own', async () => {
  const sizes = [];
  const bus = new MemoryBus([1, -2, 3, 4].map((n) => envelope(n)));
  const settings = settingsFromEnv({ KF_TOPIC: 't', KF_BATCH_WAIT_S: '0.02', KF_MAX_ATTEMPTS: '1' });
  const handler = async (payloads, ctxs) => {
    sizes.push(payloads.length);
    assert.deepEqual(ctxs.map((c) => c.attempt), payloads.map(() => 1));
    return payloads.map((n) => (n < 0 ? new RangeError(`no ${n}`) : n * 10));
  };
  await runUntil(new Runtime(settings, handler, { bus, batch: 3 }), bus, 4);
  assert.deepEqual(sizes, [3, 1]);
  const byPayload = bus.replies.map((r) => [r.kind, r.payload]);
  assert.deepEqual(byPayload.filter(([k]) => k === 'reply').map(([, p]) => p).sort(), [10, 30, 40]);
  assert.deepEqual(byPayload.filter(([k]) => k === 'error').map(([, p]) => p.message), ['no -2']);
  assert.deepEqual(bus.settled.find(([, id]) => id === 'm1'), ['dead', 'm1', 'RangeError: no -2']);
});

test('a throwing batch fails every message; expired ones are skipped before it forms', async () => {
  const seen = [];
  const late = envelope('late', { reply_to: null, deadline: Date.now() - 1000 });
  const bus = new MemoryBus([late, envelope('a', { reply_to: null }), envelope('b', { reply_to: null })]);
  const settings = settingsFromEnv({ KF_TOPIC: 't', KF_BATCH_WAIT_S: '0.02', KF_MAX_ATTEMPTS: '3' });
  const handler = async (payloads) => {
    seen.push(...payloads);
    throw new Error('broken batch');
  };
  await runUntil(new Runtime(settings, handler, { bus, batch: 10 }), bus, 3);
  assert.deepEqual(seen, ['a', 'b']);
  assert.deepEqual(bus.settled.sort(), [['ack', 'm0'], ['retry', 'm1'], ['retry', 'm2']]);
});

test('KF_BATCH bounds a batch handler and is refused for a per-message one', () => {
  const settings = settingsFromEnv({ KF_TOPIC: 't', KF_BATCH: '7' });
  assert.equal(new Runtime(settings, async () => [], { bus: new MemoryBus([]), batch: 100 }).batchSize, 7);
  assert.throws(() => new Runtime(settings, async () => null, { bus: new MemoryBus([]) }),
    /KF_BATCH is set, but the handler is not a batch handler/);
});
