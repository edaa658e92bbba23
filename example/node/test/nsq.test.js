'use strict';
// The NSQ binding's pure parts, with expected values computed by the Python side
// (client/transport/_nsq_config.py, _nsq_sub.allot) for the same inputs; and the RDY
// bookkeeping of NsqBus on fake connections.
const assert = require('node:assert/strict');
const { test } = require('node:test');
const { NsqBus } = require('../bus_nsq');
const { openBus, settingsFromEnv } = require('../function');
const { allot, parseNsqUrl, parseReplyAddress, sideTopic, wireName } = require('../nsq_config');

test('a lookupd URL with options reads as the Python NsqConfig does', () => {
  const c = parseNsqUrl('nsq://a:4161,b:4161?prefix=p.&visibility_timeout_s=2&msg_timeout_s=3');
  assert.deepEqual(c.lookupdHttp, ['a:4161', 'b:4161']);
  assert.deepEqual(c.nsqd, []);
  assert.equal(c.prefix, 'p.');
  assert.equal(c.msgTimeoutMs, 3000); // msg_timeout_s wins over its alias
  assert.equal(parseNsqUrl('nsq://a:4161?visibility_timeout_s=2.5').msgTimeoutMs, 2500);
  assert.deepEqual(
    [c.maxReqTimeoutMs, c.lookupdPollIntervalMs, c.heartbeatIntervalMs, c.outputBufferTimeoutMs, c.dialTimeoutMs],
    [3600000, 10000, 30000, 25, 2000],
  );
});

test('nsqd addresses get HTTP addresses at TCP port + 1 unless nsqd_http names them', () => {
  assert.deepEqual(parseNsqUrl('nsq://?nsqd=h:4150,[::1]:4150').nsqd, [
    { tcp: 'h:4150', http: 'h:4151' },
    { tcp: '[::1]:4150', http: '[::1]:4151' },
  ]);
  const c = parseNsqUrl('nsq://l:4161/?nsqd=h:1&nsqd_http=h:9&prefix=');
  assert.deepEqual([c.lookupdHttp, c.nsqd, c.prefix, c.msgTimeoutMs], [['l:4161'], [{ tcp: 'h:1', http: 'h:9' }], '', null]);
});

test('URLs of another form are refused with what was wrong', () => {
  assert.throws(() => parseNsqUrl('nsq://'), /names no nsqlookupd .* and no nsqd/);
  assert.throws(() => parseNsqUrl('nsq://user:pw@l:4161'), /must be nsq:\/\/lookupd:4161/);
  assert.throws(() => parseNsqUrl('nsq://l:4161/topic'), /no user, path or fragment/);
  assert.throws(() => parseNsqUrl('valkey://l:6379/0'), /must be nsq:\/\//);
  assert.throws(() => parseNsqUrl('nsq://l'), /lookupd address l must be HOST:PORT/);
  assert.throws(() => parseNsqUrl('nsq://?nsqd=h:1,h:2&nsqd_http=h:3'), /one HTTP address per nsqd/);
  assert.throws(() => parseNsqUrl('nsq://l:1?msg_timeout_s=0.5'), /msg_timeout_s must be at least 1/);
  assert.throws(() => parseNsqUrl('nsq://l:1?dial_timeout_s=soon'), /dial_timeout_s must be a number/);
});

test('unknown options are told, not refused: one URL may serve several versions', () => {
  assert.deepEqual(parseNsqUrl('nsq://l:1?block_ms=5&prefix=p&zz=1&block_ms=6').unknown, ['block_ms', 'zz']);
  const said = [];
  new NsqBus({ busUrl: 'nsq://l:1?block_ms=5', topic: 't', channel: 'c' }, (...line) => said.push(line));
  assert.deepEqual(said, [['warn', 'bus URL option(s) block_ms ignored: not known to this version']]);
});

test('the function refuses a bad bus URL at start, naming the variable', () => {
  const env = { KF_TOPIC: 'upper' };
  assert.throws(() => settingsFromEnv({ ...env, KF_BUS_URL: 'amqp://x' }), /KF_BUS_URL must be a valkey:\/\/, redis:\/\/ or nsq:\/\//);
  assert.throws(() => settingsFromEnv({ ...env, KF_BUS_URL: 'nsq://x' }), /KF_BUS_URL is not a usable NSQ URL/);
  assert.throws(() => settingsFromEnv({ ...env, KF_BUS_URL: `nsq://x:1?prefix=${'p'.repeat(60)}` }), /KF_TOPIC with the bus URL's prefix/);
  assert.equal(settingsFromEnv({ ...env, KF_BUS_URL: 'nsq://x:1?prefix=kf.' }).busUrl, 'nsq://x:1?prefix=kf.');
});

test('the bus URL scheme picks the binding', () => {
  const bus = openBus(settingsFromEnv({ KF_TOPIC: 'upper', KF_BUS_URL: 'nsq://l:4161?prefix=kf.' }));
  assert.ok(bus instanceof NsqBus);
  assert.deepEqual(bus.topics, ['kf.upper', 'kf.upper.upper.replay']);
  assert.equal(bus.deadTopic, 'kf.upper.upper.dead');
});

test('wire names get the prefix and NSQ\'s rule', () => {
  assert.equal(wireName('p.', 'orders'), 'p.orders');
  assert.equal(wireName('', `kf.r.${'a'.repeat(32)}#ephemeral`), `kf.r.${'a'.repeat(32)}#ephemeral`);
  assert.throws(() => wireName('', 'a b'), /not a valid NSQ name/);
  assert.throws(() => wireName('p', 'x'.repeat(64)), /not a valid NSQ name/);
});

// [topic, channel, kind, side_topic(topic, channel, kind) in Python]
const SIDE_TOPICS = [
  ['orders', 'audit', 'dead', 'orders.audit.dead'],
  ['t0123abcd.upper', 'upper', 'replay', 't0123abcd.upper.upper.replay'],
  ['a.b', 'c.d', 'dead', 'a.b.c.d.dead'],
  ['T'.repeat(30), 'C'.repeat(28), 'dead', `${'T'.repeat(30)}.${'C'.repeat(28)}.dead`], // 64: kept
  ['T'.repeat(30), 'C'.repeat(29), 'dead', `${'T'.repeat(30)}.${'C'.repeat(16)}.cc21252d.dead`],
  ['a'.repeat(40), 'b'.repeat(20), 'replay', `${'a'.repeat(30)}.${'b'.repeat(16)}.e5dc8aae.replay`],
  ['x'.repeat(64), 'c', 'dead', `${'x'.repeat(30)}.c.da986ac7.dead`],
  ['topic-with.dots_and-dashes-0123456789', 'channel_name.long-enough', 'dead',
    'topic-with.dots_and-dashes-012.channel_name.lon.185681c7.dead'],
  ['p.very-long-topic-namevery-long-topic-namevery-long-topic-name', 'worker', 'replay',
    'p.very-long-topic-namevery-lon.worker.33049b6b.replay'],
  ['orders#ephemeral', 'audit', 'replay', 'orders.audit.e1845518.replay'],
  ['kf.r.0123456789abcdef0123456789abcdef#ephemeral', 'kubefuncs#ephemeral', 'dead',
    'kf.r.0123456789abcdef012345678.kubefuncs.414bf4cc.dead'],
];

for (const [topic, channel, kind, want] of SIDE_TOPICS) {
  test(`side topic ${kind} of ${topic.slice(0, 20)}/${channel.slice(0, 12)} is the Python one`, () => {
    assert.equal(sideTopic(topic, channel, kind), want);
    assert.ok(want.length <= 64);
  });
}

test('reply addresses: kf.r.<32 hex>#ephemeral@<nsqd>, nothing else', () => {
  const topic = `kf.r.${'0a'.repeat(16)}#ephemeral`;
  assert.deepEqual(parseReplyAddress(`${topic}@127.0.0.1:4150`), [topic, '127.0.0.1:4150']);
  assert.deepEqual(parseReplyAddress(`${topic}@[::1]:4150`), [topic, '[::1]:4150']);
  for (const bad of [
    topic, // no nsqd
    `${topic}@nsqd`, // no port
    `kf:reply:${'0a'.repeat(16)}`, // a Valkey inbox
    `kf.r.${'0A'.repeat(16)}#ephemeral@h:1`, // upper-case hex
    `kf.r.${'0a'.repeat(15)}#ephemeral@h:1`, // 30 hex
    `kf.r.${'0a'.repeat(16)}@h:1`, // not ephemeral
    `orders@h:1`,
    `${topic}\n@h:1`, // Python's re `$` would let this through
  ]) {
    assert.equal(parseReplyAddress(bad), null, bad);
  }
});

// [held per connection, limit, offset, primary, allot(...) in Python]
const ALLOTMENTS = [
  [[0, 0], 16, 0, [true, false], [8, 8]],
  [[0, 0, 0, 0], 1, 0, [true, false, true, false], [1, 0, 0, 0]],
  [[0, 0, 0, 0], 1, 1, [true, false, true, false], [0, 0, 1, 0]],
  [[0, 0, 0, 0], 1, 3, [true, false, true, false], [0, 0, 0, 1]],
  [[0, 0, 0, 0], 3, 2, [true, false, true, false], [1, 1, 1, 0]],
  [[2, 1, 0], 4, 0, null, [3, 1, 0]],
  [[3, 2], 4, 5, [true, false], [3, 2]],
  [[], 4, 0, null, []],
  [[0, 0, 0], 5, 7, [false, true, false], [2, 1, 2]],
];

test('RDY shares are the Python allot()', () => {
  for (const [held, limit, offset, primary, want] of ALLOTMENTS) {
    assert.deepEqual(allot(held, limit, offset, primary), want, JSON.stringify([held, limit, offset]));
  }
});

// -- NsqBus on fake connections: no sockets ----------------------------------------------------

function fakeBus(concurrency) {
  const bus = new NsqBus({ busUrl: 'nsq://?nsqd=a:4150,b:4150', topic: 't', channel: 'c', concurrency });
  const sent = [];
  for (const tcp of ['a:4150', 'b:4150']) {
    for (const topic of bus.topics) {
      const link = {
        topic, key: `${tcp}/${topic}`, node: { tcp }, held: 0, rdy: 0,
        conn: { alive: true, send: (verb, args) => sent.push([tcp, topic, verb, ...args]) },
        ready(n) { this.rdy = n; },
      };
      bus.links.set(link.key, link);
    }
  }
  const links = [...bus.links.values()];
  const rdy = () => links.map((l) => l.rdy);
  const sum = () => rdy().reduce((a, b) => a + b, 0);
  return { bus, links, sent, rdy, sum };
}

test('the RDY counts of all connections add up to KF_CONCURRENCY, however messages come', async () => {
  const { bus, links, sent, rdy, sum } = fakeBus(5);
  bus.rebalance();
  assert.equal(sum(), 5);
  bus.received(links[0], { id: 'm1', attempts: 1, body: Buffer.from('x') });
  bus.received(links[0], { id: 'm2', attempts: 2, body: Buffer.from('y') });
  assert.equal(sum(), 5);
  assert.ok(links[0].rdy >= 2); // never below what the connection holds
  const [m1] = await bus.fetch(1);
  assert.deepEqual([m1.id, m1.attempt], ['m1', 1]);
  await bus.retry(m1, 1500.6);
  assert.deepEqual(sent.at(-1), ['a:4150', 't', 'REQ', 'm1', 1501]);
  assert.equal(sum(), 5);
  // When it stops reading: RDY 0 everywhere, the unfetched m2 handed back at once
  bus.stopReading();
  assert.deepEqual(rdy(), [0, 0, 0, 0]);
  assert.deepEqual(sent.at(-1), ['a:4150', 't', 'REQ', 'm2', 0]);
  assert.deepEqual(await bus.fetch(5), []);
});

test('a retry longer than max_req_timeout_s is capped, not refused', async () => {
  const { bus, links, sent } = fakeBus(1);
  bus.received(links[1], { id: 'm', attempts: 1, body: Buffer.alloc(0) });
  const [m] = await bus.fetch(1);
  await bus.retry(m, 7200 * 1000);
  assert.deepEqual(sent.at(-1), ['a:4150', 't.c.replay', 'REQ', 'm', 3600000]);
  await bus.ack(m); // settled already: nothing more is sent
  assert.equal(sent.length, 1);
});

test('a reply to anything but an NSQ inbox is refused', async () => {
  const { bus } = fakeBus(1);
  await assert.rejects(bus.reply('kf:reply:abc', Buffer.alloc(0)), /not a reply inbox of an NSQ bus/);
});
