'use strict';
// The Valkey binding of docs/protocol.md: key names, the consumer group, reading, settling.

const crypto = require('node:crypto');
const Redis = require('ioredis');

const REPLY_TTL_MS = 60000;

// Create a channel's consumer group: the first group of a stream starts at 0 (nothing
// published before it is lost), later groups at $; a group the server lost starts at 0
// (ARGV[2]). Same script as the Python runtime.
const ENSURE_GROUP = `
local start = '$'
if ARGV[2] == '0' then
  start = '0'
elseif redis.call('EXISTS', KEYS[1]) == 0 then
  start = '0'
elseif #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
  start = '0'
end
local ok, err = pcall(redis.call, 'XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')
if not ok and not string.find(tostring(err), 'BUSYGROUP') then
  return redis.error_reply(tostring(err))
end
return start
`;

// Move due delayed entries ("<attempts>\n<nonce>\n<body>") back into their streams.
const MOVE_DUE = `
local moved = 0
local cut = tonumber(ARGV[3])
for i = 2, #KEYS do
  local zkey = KEYS[i]
  local stream = string.sub(zkey, cut + 1)
  local due = redis.call('ZRANGE', zkey, '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
  for _, member in ipairs(due) do
    local a = string.find(member, '\\n', 1, true)
    local b = string.find(member, '\\n', a + 1, true)
    redis.call('XADD', stream, '*', 'm', string.sub(member, b + 1), 'a', string.sub(member, 1, a - 1))
    redis.call('ZREM', zkey, member)
    moved = moved + 1
  end
  if redis.call('ZCARD', zkey) == 0 then redis.call('SREM', KEYS[1], zkey) end
end
return moved
`;

// valkey://host:6379/0?prefix=kf&visibility_timeout_s=30 -> redis URL + kubefuncs options.
function parseBusUrl(url) {
  const match = /^(valkeys?|rediss?):\/\/([^?#]*)(?:\?([^#]*))?/.exec(url);
  if (!match) throw new Error(`KF_BUS_URL must be a valkey:// or redis:// URL, got ${url}`);
  const scheme = match[1].endsWith('s') ? 'rediss' : 'redis';
  const query = new URLSearchParams(match[3] || '');
  return {
    redisUrl: `${scheme}://${match[2]}`,
    prefix: query.get('prefix') || 'kf',
    visibilityMs: 1000 * Number(query.get('visibility_timeout_s') || 30),
    blockMs: Number(query.get('block_ms') || 2000),
    readCount: Number(query.get('read_count') || 16),
  };
}

// Field list [f1, v1, f2, v2, ...] of a stream entry -> one message. An entry that is not
// one kubefuncs wrote (no m, an attempt count that is not a small integer) still becomes a
// message, marked `malformed`: the runtime dead-letters it instead of the loop failing.
function message(stream, id, fields, deliveries) {
  const f = {};
  for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i].toString()] = fields[i + 1];
  const m = { stream, id: id.toString(), body: f.m || Buffer.alloc(0), attempt: deliveries };
  const a = f.a === undefined ? '0' : f.a.toString();
  if (!/^[0-9]{1,9}$/.test(a)) {
    m.malformed = `attempt field ${JSON.stringify(a.slice(0, 40))} is not an integer`;
  } else {
    m.attempt += Number(a);
  }
  if (f.m === undefined) m.malformed = 'entry has no m field';
  return m;
}

// A command failed because the server lost the consumer group (a restart without
// persistence, or the group was deleted).
const lostGroup = (e) => String(e && e.message).includes('NOGROUP');

// Errors of the reply address itself, not of the bus: retrying cannot help.
const permanentReplyError = (e) => /^(WRONGTYPE|EXECABORT)/.test(String(e && e.message));
const undeliverable = (e) => Object.assign(e, { undeliverable: true });

class Bus {
  constructor({ busUrl, password, topic, channel }) {
    Object.assign(this, parseBusUrl(busUrl));
    const p = this.prefix;
    this.channel = channel;
    this.streams = [`${p}:topic:${topic}`, `${p}:retry:${topic}:${channel}`];
    this.retryStream = this.streams[1];
    this.deadStream = `${p}:dead:${topic}:${channel}`;
    this.consumer = `node-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
    // commands wait through an outage instead of failing: settled work must not be redone
    const options = { password, maxRetriesPerRequest: null };
    this.cmd = new Redis(this.redisUrl, options);
    this.reader = new Redis(this.redisUrl, options); // blocking reads get their own connection
    this.lastClaim = 0;
  }

  get connected() {
    return this.cmd.status === 'ready';
  }

  // One round trip for all of them (sent back to back, awaited together): part of the
  // time from start to ready.
  async ensureGroups(lost = false) {
    await Promise.all(this.streams.flatMap((stream) => [
      this.cmd.eval(ENSURE_GROUP, 1, stream, this.channel, lost ? '0' : ''),
      this.cmd.sadd(`${this.prefix}:streams`, stream),
    ]));
  }

  // Up to `count` messages: first what dead consumers left behind, else new ones.
  async fetch(free) {
    const count = Math.min(free, this.readCount); // first replies out while the rest is read
    try {
      const claimed = await this.reclaim(count);
      return claimed.length ? claimed : await this.read(count);
    } catch (e) {
      // any command of the round may be the first to see the group gone: recreate it
      if (!lostGroup(e)) throw e;
      await this.ensureGroups(true);
      return [];
    }
  }

  async read(count) {
    // block_ms=0 means polling (as in the Python transport), not BLOCK 0 (forever)
    const block = this.blockMs > 0 ? ['BLOCK', this.blockMs] : [];
    const response = await this.reader.xreadgroupBuffer(
      'GROUP', this.channel, this.consumer, 'COUNT', count, ...block,
      'STREAMS', ...this.streams, '>', '>');
    if (!response && !block.length) await new Promise((resolve) => setTimeout(resolve, 10));
    const out = [];
    for (const [stream, entries] of response || []) {
      for (const [id, fields] of entries) {
        if (fields) out.push(message(stream.toString(), id, fields, 1));
      }
    }
    return out;
  }

  // XAUTOCLAIM what has been idle longer than the visibility timeout (a crashed consumer's).
  async reclaim(count) {
    if (Date.now() - this.lastClaim < Math.min(1000, this.visibilityMs / 4)) return [];
    this.lastClaim = Date.now();
    const out = [];
    for (const stream of this.streams) {
      const [, entries] = await this.cmd.xautoclaimBuffer(
        stream, this.channel, this.consumer, this.visibilityMs, '0-0', 'COUNT', count);
      const live = entries.filter(([, fields]) => fields);
      if (!live.length) continue;
      const counts = await this.deliveryCounts(stream, live.map(([id]) => id.toString()));
      for (const [id, fields] of live) {
        out.push(message(stream, id, fields, counts.get(id.toString()) || 1));
      }
    }
    return out;
  }

  async deliveryCounts(stream, ids) {
    const rows = await this.cmd.xpending(
      stream, this.channel, ids[0], ids[ids.length - 1], ids.length * 2, this.consumer);
    return new Map(rows.map(([id, , , times]) => [id, Number(times)]));
  }

  // -- settling: exactly one of these per message ---------------------------------------

  ack(m) {
    return this.cmd.xack(m.stream, this.channel, m.id);
  }

  retry(m, delayMs) {
    const tx = this.cmd.multi();
    if (delayMs <= 0) {
      tx.xadd(this.retryStream, '*', 'm', m.body, 'a', m.attempt);
    } else {
      const zkey = `${this.prefix}:delayed:${this.retryStream}`;
      const nonce = crypto.randomBytes(16).toString('hex');
      const member = Buffer.concat([Buffer.from(`${m.attempt}\n${nonce}\n`), m.body]);
      tx.zadd(zkey, Date.now() + delayMs, member).sadd(`${this.prefix}:delayed`, zkey);
    }
    return exec(tx.xack(m.stream, this.channel, m.id));
  }

  deadLetter(m, reason) {
    const tx = this.cmd.multi()
      .xadd(this.deadStream, '*', 'm', m.body, 'reason', reason, 'a', m.attempt, 't', Date.now())
      .xack(m.stream, this.channel, m.id);
    return exec(tx);
  }

  // Still working: reset the idle time without counting a delivery.
  touch(m) {
    return this.cmd.xclaim(m.stream, this.channel, this.consumer, 0, m.id, 'IDLE', 0, 'JUSTID');
  }

  // An address that is not an inbox, or a key of another type (WRONGTYPE), is refused for
  // good: `undeliverable`, so the runtime dead-letters the message instead of retrying.
  async reply(address, body) {
    if (!address.startsWith(`${this.prefix}:reply:`)) {
      throw undeliverable(new Error(`reply address ${address} is not a reply inbox of this bus`));
    }
    try {
      await exec(this.cmd.multi().rpush(address, body).pexpire(address, REPLY_TTL_MS));
    } catch (e) {
      throw permanentReplyError(e) ? undeliverable(e) : e;
    }
  }

  // Housekeeping: move due delayed retries back into their streams.
  async moveDue() {
    const zkeys = await this.cmd.smembers(`${this.prefix}:delayed`);
    if (!zkeys.length) return;
    const cut = `${this.prefix}:delayed:`.length;
    await this.cmd.eval(MOVE_DUE, 1 + zkeys.length, `${this.prefix}:delayed`, ...zkeys,
      Date.now(), 1000, cut);
  }

  stopReading() {
    this.reader.disconnect(); // rejects a blocked XREADGROUP at once
  }

  async close() {
    this.reader.disconnect();
    await this.cmd.quit();
  }
}

async function exec(tx) {
  for (const [err] of await tx.exec()) if (err) throw err;
}

module.exports = { Bus, message, parseBusUrl, undeliverable };
