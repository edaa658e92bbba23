'use strict';
// A small client for nsqd's TCP protocol (V2): one connection, the publishing connections
// of a process, and the one nsqlookupd call the binding needs.
//
// Written here rather than taken from the nsqjs package (0.13): an nsqjs Reader reads one
// topic with its own maxInFlight, but KF_CONCURRENCY must bound the channel's topic and its
// replay topic together (docs/protocol.md §11); it finds nsqd through nsqlookupd
// /lookup?topic=, while the binding connects to every nsqd of /nodes (so a replay topic that
// appears later is read at once); and its requeue backs the whole reader off by default.
// What is left to write is framing, IDENTIFY and heartbeats: NsqdConn below.

const crypto = require('node:crypto');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const { splitAddress } = require('./nsq_config');

const USER_AGENT = 'kubefuncs-node/0.1.0';
const MAGIC = Buffer.from('  V2');
const [RESPONSE, ERROR, MESSAGE] = [0, 1, 2];
const HEARTBEAT = '_heartbeat_';
// error frames that answer a FIN/REQ/TOUCH (which have no success response), not a command
const SETTLE_ERROR = /^E_(FIN|REQ|TOUCH)_FAILED/;

// nsqd answered a command with an error frame (E_BAD_TOPIC, E_BAD_MESSAGE, ...).
class NsqdRefused extends Error {
  get name() { return 'NsqdRefused'; }
}

// One TCP connection to one nsqd. `onMessage({id, attempts, body})` and `onClose(conn)`.
class NsqdConn {
  constructor(address, config, { onMessage = () => {}, onClose = () => {}, log = () => {} } = {}) {
    this.address = address;
    this.config = config;
    this.onMessage = onMessage;
    this.onClose = onClose;
    this.log = log;
    this.pending = []; // [resolve, reject] of commands nsqd answers, in order
    this.buffer = Buffer.alloc(0);
    this.alive = false;
    this.closed = false;
    this.msgTimeoutMs = null; // as negotiated in IDENTIFY
    this.maxRdyCount = 2500;
  }

  // Connect and IDENTIFY (feature negotiation, so nsqd tells its msg_timeout).
  async open() {
    const [host, port] = splitAddress(this.address);
    const socket = net.connect({ host, port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk) => this.received(chunk));
    socket.on('error', (e) => { this.why = e.message; });
    socket.on('close', () => this.gone());
    socket.write(MAGIC); // written once connected
    this.alive = true;
    const answer = this.command('IDENTIFY', [], Buffer.from(JSON.stringify(this.identity())),
      this.config.dialTimeoutMs);
    const text = await answer;
    const features = text === 'OK' ? {} : JSON.parse(text); // OK: nsqd without negotiation
    this.msgTimeoutMs = features.msg_timeout || null;
    this.maxRdyCount = features.max_rdy_count || this.maxRdyCount;
    this.lastReceived = Date.now();
    // silent for two heartbeats: the peer is gone without a FIN
    const limit = 2 * this.config.heartbeatIntervalMs + 1000;
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastReceived > limit) this.close(`silent for ${limit / 1000}s`);
    }, this.config.heartbeatIntervalMs).unref();
    return this;
  }

  identity() {
    const out = {
      client_id: `${os.hostname()}-${process.pid}`,
      hostname: os.hostname(),
      user_agent: USER_AGENT,
      feature_negotiation: true,
      heartbeat_interval: this.config.heartbeatIntervalMs,
      output_buffer_timeout: this.config.outputBufferTimeoutMs,
    };
    if (this.config.msgTimeoutMs) out.msg_timeout = this.config.msgTimeoutMs;
    return out;
  }

  // A command nsqd does not answer (RDY, FIN, REQ, TOUCH, NOP).
  send(verb, args = [], body = null) {
    if (!this.alive) throw new Error(`connection to nsqd ${this.address} is closed`);
    const line = Buffer.from(`${[verb, ...args].join(' ')}\n`);
    if (body === null) {
      this.socket.write(line);
      return;
    }
    const size = Buffer.alloc(4);
    size.writeUInt32BE(body.length);
    this.socket.write(Buffer.concat([line, size, body]));
  }

  // A command nsqd answers (IDENTIFY, SUB, PUB, CLS): its answer, as text.
  command(verb, args = [], body = null, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.close(`no answer to ${verb} within ${timeoutMs / 1000}s`);
      }, timeoutMs);
      const done = (fn) => (value) => { clearTimeout(timer); fn(value); };
      this.pending.push([done(resolve), done(reject)]);
      try {
        this.send(verb, args, body);
      } catch (e) {
        this.pending.pop();
        done(reject)(e);
      }
    });
  }

  close(why = 'closed') {
    if (this.socket) this.socket.destroy();
    this.gone(why);
  }

  // -- frames ----------------------------------------------------------------------------

  received(chunk) {
    this.lastReceived = Date.now();
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    while (this.buffer.length >= 8) {
      const size = this.buffer.readUInt32BE(0);
      if (this.buffer.length < 4 + size) break;
      const type = this.buffer.readUInt32BE(4);
      const data = this.buffer.subarray(8, 4 + size);
      this.buffer = this.buffer.subarray(4 + size);
      this.frame(type, data);
    }
  }

  frame(type, data) {
    if (type === MESSAGE) {
      // timestamp (8 bytes, ns), attempts (uint16), id (16 bytes), body
      const body = Buffer.from(data.subarray(26)); // a copy: the frame buffer is reused
      this.onMessage({ id: data.toString('latin1', 10, 26), attempts: data.readUInt16BE(8), body });
      return;
    }
    const text = data.toString('utf8');
    if (type === RESPONSE && text === HEARTBEAT) {
      if (this.alive) this.send('NOP');
    } else if (type === RESPONSE) {
      const waiting = this.pending.shift();
      if (waiting) waiting[0](text);
    } else if (SETTLE_ERROR.test(text)) {
      this.log('info', `nsqd ${this.address}: ${text}`); // e.g. FIN after the msg_timeout
    } else {
      this.log('warn', `nsqd ${this.address}: ${text}`);
      const waiting = this.pending.shift();
      if (waiting) waiting[1](new NsqdRefused(`nsqd ${this.address}: ${text}`));
    }
  }

  gone(why) {
    if (this.closed) return;
    this.closed = true;
    this.alive = false;
    clearInterval(this.watchdog);
    const lost = new Error(`connection to nsqd ${this.address} ${why || this.why || 'closed'}`);
    for (const [, reject] of this.pending.splice(0)) reject(lost);
    this.onClose(this);
  }
}

// The publishing connections: one per nsqd, dialled on demand. A topic goes to the nsqd
// ranked first by sha1("<nsqd tcp>/<topic>") (`prefer` before all), the next on failure.
class Publishers {
  constructor(config, log) {
    this.config = config;
    this.log = log;
    this.conns = new Map();
    this.dialing = new Map();
    this.downUntil = new Map();
    this.failures = new Map();
    this.closed = false;
  }

  get alive() {
    return [...this.conns.values()].some((c) => c.alive);
  }

  ranked(nodes, topic, prefer) {
    const rank = (n) => [n.tcp !== prefer, (this.downUntil.get(n.tcp) || 0) > Date.now(),
      crypto.createHash('sha1').update(`${n.tcp}/${topic}`).digest('hex')];
    const keyed = nodes.map((n) => [rank(n), n]);
    keyed.sort(([a], [b]) => (a[0] - b[0]) || (a[1] - b[1]) || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0));
    return keyed.map(([, n]) => n);
  }

  async publish(nodes, topic, body, prefer = null) {
    const errors = [];
    for (const node of this.ranked(nodes, topic, prefer)) {
      try {
        const conn = await this.conn(node);
        await conn.command('PUB', [topic], body);
        return;
      } catch (e) {
        if (e instanceof NsqdRefused) throw e; // any other nsqd would refuse it too
        errors.push(e.message);
      }
    }
    throw new Error(`no nsqd took the message for ${topic}: ${errors.join('; ') || 'no nsqd known'}`);
  }

  conn(node) {
    const conn = this.conns.get(node.tcp);
    if (conn && conn.alive) return Promise.resolve(conn);
    if (!this.dialing.has(node.tcp)) {
      const dial = this.dial(node).finally(() => this.dialing.delete(node.tcp));
      this.dialing.set(node.tcp, dial);
    }
    return this.dialing.get(node.tcp);
  }

  async dial(node) {
    const conn = new NsqdConn(node.tcp, this.config, {
      onClose: (c) => { if (this.conns.get(node.tcp) === c) this.conns.delete(node.tcp); },
      log: this.log,
    });
    try {
      await conn.open();
    } catch (e) {
      const failures = (this.failures.get(node.tcp) || 0) + 1;
      this.failures.set(node.tcp, failures);
      this.downUntil.set(node.tcp, Date.now() + Math.min(5000, 100 * 2 ** Math.min(failures, 16)));
      throw e;
    }
    if (this.closed) {
      conn.close();
      throw new Error('the bus is closed');
    }
    this.failures.delete(node.tcp);
    this.downUntil.delete(node.tcp);
    this.conns.set(node.tcp, conn);
    return conn;
  }

  close() {
    this.closed = true;
    for (const conn of this.conns.values()) conn.close();
    this.conns.clear();
  }
}

// GET http://<address><path> as JSON (nsqlookupd /nodes); nsq < 1.0 wraps it in "data".
function getJson(address, path, timeoutMs) {
  const url = `http://${address}${path}`;
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers: { Accept: 'application/vnd.nsq; version=1.0' } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) return reject(new Error(`GET ${url}: ${res.statusCode} ${text.slice(0, 200)}`));
        try {
          const doc = JSON.parse(text);
          resolve(doc && doc.data ? doc.data : doc);
        } catch (e) {
          reject(new Error(`GET ${url}: not JSON (${e.message})`));
        }
      });
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs / 1000}s`)));
    req.on('error', (e) => reject(new Error(`GET ${url} failed: ${e.message}`)));
  });
}

// The nsqd nodes an nsqlookupd knows: [{tcp, http}].
async function lookupNodes(lookupd, timeoutMs) {
  const doc = await getJson(lookupd, '/nodes', timeoutMs);
  return ((doc && doc.producers) || []).map((p) => {
    let host = p.broadcast_address || p.address || '127.0.0.1';
    if (host.includes(':') && !host.startsWith('[')) host = `[${host}]`;
    return { tcp: `${host}:${p.tcp_port}`, http: `${host}:${p.http_port}` };
  });
}

module.exports = { NsqdConn, NsqdRefused, Publishers, lookupNodes };
