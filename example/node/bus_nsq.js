'use strict';
// The NSQ binding of docs/protocol.md §11, with the interface of the Valkey Bus (bus.js):
// one SUB connection (a "link") per nsqd and topic (the channel's topic T and its replay
// topic T.C.replay), RDY shared so that at most KF_CONCURRENCY messages are in flight in
// all; FIN, REQ <delay ms>, TOUCH; dead letters published to T.C.dead; replies published to
// the reply topic on the nsqd the address names.

const crypto = require('node:crypto');
const { encode: pack } = require('@msgpack/msgpack');
const { NsqdConn, NsqdRefused, Publishers, lookupNodes } = require('./nsq_conn');
const { allot, parseNsqUrl, parseReplyAddress, sideTopic, wireName } = require('./nsq_config');
const { undeliverable } = require('./bus');

const TICK_MS = 100; // how often links are checked and reconnected (each with its own backoff)
const ROTATE_EVERY_MS = 250; // fewer free slots than links: the shares rotate this often

class NsqBus {
  constructor({ busUrl, topic, channel, concurrency }, log = () => {}) {
    this.config = parseNsqUrl(busUrl);
    this.log = log;
    if (this.config.unknown.length) {
      log('warn', `bus URL option(s) ${this.config.unknown.join(', ')} ignored: not known to this version`);
    }
    this.topic = topic;
    this.channel = channel;
    const wire = wireName(this.config.prefix, topic);
    this.topics = [wire, sideTopic(wire, channel, 'replay')];
    this.deadTopic = sideTopic(wire, channel, 'dead');
    this.limit = Math.max(1, concurrency || 1);
    this.nodes = [...this.config.nsqd];
    this.links = new Map(); // "<nsqd tcp>/<topic>" -> Link
    this.connecting = new Set();
    this.failures = new Map();
    this.nextTry = new Map();
    this.queue = []; // received, not yet fetched
    this.wakeUp = null;
    this.attempted = () => {}; // called whenever a connection attempt ends
    this.publishers = new Publishers(this.config, log);
    this.msgTimeoutMs = this.config.msgTimeoutMs || 60000;
    this.offset = 0;
    this.rotated = Date.now();
    this.refreshed = 0;
    this.refreshing = null;
    this.reading = true;
    this.closed = false;
  }

  // nsqd's msg_timeout: the runtime touches a message every third of it.
  get visibilityMs() {
    return this.msgTimeoutMs;
  }

  get connected() {
    return [...this.links.values()].some((l) => l.conn.alive) || this.publishers.alive;
  }

  // Find the nsqd nodes (waiting while there are none), SUB on each, and return once every
  // nsqd had its chance: a message published after this is not missed.
  async ensureGroups() {
    await this.discover();
    if (this.closed) return;
    this.supervisor = setInterval(() => this.supervise(), TICK_MS);
    this.sync();
    const keys = this.nodes.flatMap((n) => this.topics.map((t) => `${n.tcp}/${t}`));
    const deadline = Date.now() + this.config.dialTimeoutMs + 1000;
    while (!this.closed && Date.now() < deadline && !keys.every((k) => this.tried(k))) {
      let timer;
      await new Promise((resolve) => {
        this.attempted = resolve;
        timer = setTimeout(resolve, deadline - Date.now());
      });
      clearTimeout(timer);
    }
  }

  async discover() {
    for (let failures = 1; !this.closed; failures++) {
      await this.refreshNodes();
      if (this.nodes.length) return;
      const delay = Math.min(10000, 100 * 2 ** failures);
      this.log('warn', `no nsqd known through ${this.config.lookupdHttp.join(',')} yet; retrying in ${delay / 1000}s`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  // Every message: the next `count` received ones (waits while there is none).
  async fetch(count) {
    if (!this.queue.length && this.reading) {
      await new Promise((resolve) => { this.wakeUp = resolve; });
    }
    const out = [];
    while (out.length < count && this.queue.length) {
      const m = this.queue.shift();
      if (!m.done && m.link.conn.alive) out.push(m); // else nsqd hands it out again
    }
    return out;
  }

  // -- settling: exactly one of these per message ---------------------------------------

  async ack(m) {
    this.settle(m, 'FIN');
  }

  async retry(m, delayMs) {
    let delay = Math.max(0, Math.round(delayMs));
    if (delay > this.config.maxReqTimeoutMs) { // nsqd would clamp it; say so in the log
      this.log('warn', `retry delay ${delay / 1000}s capped at nsqd's max-req-timeout`, { attempt: m.attempt });
      delay = this.config.maxReqTimeoutMs;
    }
    this.settle(m, 'REQ', [delay]);
  }

  // PUB the dead-letter map to T.C.dead on the nsqd the message came from, then FIN.
  async deadLetter(m, reason) {
    if (m.done) return;
    checkAlive(m);
    const prefer = m.link.node.tcp;
    try {
      try {
        await this.publishers.publish(this.nodes, this.deadTopic, this.letter(m.body, reason, m.attempt), prefer);
      } catch (e) {
        if (!(e instanceof NsqdRefused)) throw e;
        // too big for nsqd with the wrapper: keep what we can
        const note = `${reason} [body of ${m.body.length} bytes not kept: ${e.message}]`;
        await this.publishers.publish(this.nodes, this.deadTopic, this.letter(Buffer.alloc(0), note, m.attempt), prefer);
      }
    } catch (e) {
      this.settle(m, 'REQ', [1000]); // not kept anywhere: the next attempt dead-letters it again
      throw e;
    }
    this.settle(m, 'FIN');
  }

  letter(body, reason, attempt) {
    const map = {
      v: 1,
      id: crypto.randomBytes(16).toString('hex'),
      body,
      reason,
      attempt,
      time: Date.now(),
      topic: this.topic,
      channel: this.channel,
    };
    const bytes = pack(map);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  async touch(m) {
    if (m.done) return;
    checkAlive(m);
    m.link.conn.send('TOUCH', [m.id]);
  }

  settle(m, verb, args = []) {
    if (m.done) return;
    m.done = true;
    m.link.held -= 1;
    try {
      checkAlive(m);
      m.link.conn.send(verb, [m.id, ...args]);
    } finally {
      this.rebalance();
    }
  }

  // kf.r.<32 hex>#ephemeral@<nsqd>: PUB the topic to that nsqd when we know it (after asking
  // nsqlookupd once more), else to any nsqd we know; never dial an address a message names.
  async reply(address, body) {
    const parsed = parseReplyAddress(address);
    if (!parsed) {
      throw undeliverable(new Error(`reply address ${address} is not a reply inbox of an NSQ bus`));
    }
    const [topic, nsqd] = parsed;
    if (!this.nodes.some((n) => n.tcp === nsqd)) await this.refreshNodes();
    try {
      await this.publishers.publish(this.nodes, topic, body, nsqd);
    } catch (e) {
      throw e instanceof NsqdRefused ? undeliverable(e) : e; // nsqd refuses it for good
    }
  }

  async moveDue() {} // nsqd defers REQ and DPUB itself

  // RDY 0 everywhere, hand back what was received but not fetched.
  stopReading() {
    this.reading = false;
    for (const m of this.queue.splice(0)) handBack(m);
    if (this.wakeUp) this.wakeUp();
    this.rebalance();
  }

  // CLS on every link (nsqd answers once every earlier FIN/REQ is processed), then close.
  async close() {
    if (this.closed) return;
    this.stopReading();
    this.closed = true;
    clearInterval(this.supervisor);
    this.attempted();
    const links = [...this.links.values()];
    this.links.clear();
    await Promise.all(links.map((l) => l.shutdown()));
    this.publishers.close();
  }

  // -- links -----------------------------------------------------------------------------

  supervise() {
    if (Date.now() - this.refreshed >= this.config.lookupdPollIntervalMs) {
      this.refreshNodes().catch(() => {});
    }
    this.sync();
  }

  // Connect to every node not yet connected (with backoff after failures); rotate shares.
  sync() {
    const now = Date.now();
    for (const node of this.nodes) {
      for (const topic of this.topics) {
        const key = `${node.tcp}/${topic}`;
        if (this.links.has(key) || this.connecting.has(key)) continue;
        if (now >= (this.nextTry.get(key) || 0)) this.connect(new Link(this, node, topic));
      }
    }
    if (now - this.rotated >= ROTATE_EVERY_MS) {
      this.rotated = now;
      this.offset += 1;
      this.rebalance();
    }
  }

  async connect(link) {
    this.connecting.add(link.key);
    try {
      await link.conn.open();
      await link.conn.command('SUB', [link.topic, this.channel]);
    } catch (e) {
      this.failed(link.key, e.message);
      link.conn.close();
      return;
    } finally {
      this.connecting.delete(link.key);
      this.attempted();
    }
    if (this.closed || !this.reading) {
      await link.shutdown();
      return;
    }
    if (this.failures.delete(link.key)) {
      this.log('info', `consuming ${link.topic}/${this.channel} on nsqd ${link.node.tcp} again`);
    }
    this.links.set(link.key, link);
    if (link.conn.msgTimeoutMs) this.msgTimeoutMs = link.conn.msgTimeoutMs;
    this.rebalance();
  }

  failed(key, why) {
    const failures = (this.failures.get(key) || 0) + 1;
    this.failures.set(key, failures);
    const ceiling = Math.min(5000, 100 * 2 ** Math.min(failures, 16));
    this.nextTry.set(key, Date.now() + ceiling * (0.5 + Math.random() / 2));
    if (failures === 1) {
      const [tcp, topic] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
      this.log('warn', `cannot consume ${topic}/${this.channel} on nsqd ${tcp}: ${why}`);
    }
  }

  tried(key) {
    return this.links.has(key) || (!this.connecting.has(key) && this.failures.has(key));
  }

  lost(link) {
    if (this.links.get(link.key) !== link) return;
    this.links.delete(link.key);
    if (!this.closed) this.failed(link.key, 'connection lost');
    this.rebalance();
  }

  rebalance() {
    const links = [...this.links.values()].filter((l) => l.conn.alive);
    const counts = this.reading
      ? allot(links.map((l) => l.held), this.limit, this.offset, links.map((l) => l.topic === this.topics[0]))
      : links.map(() => 0);
    links.forEach((link, i) => link.ready(counts[i]));
  }

  received(link, msg) {
    const m = { id: msg.id, body: msg.body, attempt: msg.attempts, link, done: false };
    link.held += 1;
    if (!this.reading) {
      handBack(m);
      return;
    }
    this.queue.push(m);
    const wakeUp = this.wakeUp;
    this.wakeUp = null;
    if (wakeUp) wakeUp();
    this.rebalance();
  }

  // Re-read the nsqd nodes from nsqlookupd (kept as they were when none answers).
  refreshNodes() {
    this.refreshed = Date.now();
    if (!this.config.lookupdHttp.length) return Promise.resolve();
    if (!this.refreshing) {
      this.refreshing = this.lookup().finally(() => { this.refreshing = null; });
    }
    return this.refreshing;
  }

  async lookup() {
    const found = new Map();
    const errors = [];
    for (const lookupd of this.config.lookupdHttp) {
      try {
        for (const node of await lookupNodes(lookupd, this.config.dialTimeoutMs + 3000)) found.set(node.tcp, node);
      } catch (e) {
        errors.push(e.message);
      }
    }
    if (errors.length === this.config.lookupdHttp.length) {
      this.log('warn', `no nsqlookupd answered: ${errors.join('; ')}`);
      return;
    }
    const known = new Set(this.config.nsqd.map((n) => n.tcp));
    this.nodes = [...this.config.nsqd, ...[...found.values()].filter((n) => !known.has(n.tcp))];
  }
}

// One SUB connection: one nsqd, one topic; `held` counts its unsettled messages.
class Link {
  constructor(bus, node, topic) {
    this.node = node;
    this.topic = topic;
    this.key = `${node.tcp}/${topic}`;
    this.held = 0;
    this.rdy = null;
    this.conn = new NsqdConn(node.tcp, bus.config, {
      onMessage: (msg) => bus.received(this, msg),
      onClose: () => bus.lost(this),
      log: bus.log,
    });
  }

  ready(count) {
    const rdy = Math.min(count, this.conn.maxRdyCount);
    if (rdy === this.rdy || !this.conn.alive) return;
    this.rdy = rdy;
    this.conn.send('RDY', [rdy]);
  }

  async shutdown() {
    try {
      await this.conn.command('CLS', [], null, 1000);
    } catch {
      // closing anyway
    } finally {
      this.conn.close();
    }
  }
}

function checkAlive(m) {
  if (!m.link.conn.alive) {
    throw new Error(`connection to nsqd ${m.link.node.tcp} was lost; nsqd hands the message out again after its msg_timeout`);
  }
}

// Requeue a message the runtime never saw (the bus stops reading).
function handBack(m) {
  try {
    if (!m.done && m.link.conn.alive) {
      m.done = true;
      m.link.held -= 1;
      m.link.conn.send('REQ', [m.id, 0]);
    }
  } catch {
    // its connection is gone: nsqd hands it out again after its msg_timeout
  }
}

module.exports = { NsqBus };
