'use strict';
// The NSQ binding's pure parts (docs/protocol.md §11): the bus URL, NSQ names, reply
// addresses and the RDY shares. The same rules as client/transport/_nsq_config.py and
// _nsq_sub.py's allot(); test/nsq.test.js pins them against values from the Python side.

const crypto = require('node:crypto');

const WIRE_NAME = /^[A-Za-z0-9._-]{1,64}$|^[A-Za-z0-9._-]{1,54}#ephemeral$/;
const REPLY_TOPIC = /^kf\.r\.[0-9a-f]{32}#ephemeral$/;

// option -> [default, minimum]; seconds unless the name says otherwise
const NUMBERS = {
  max_req_timeout_s: [3600, 0],
  lookupd_poll_interval_s: [10, 0.05],
  heartbeat_interval_s: [30, 1],
  output_buffer_timeout_ms: [25, 1],
  dial_timeout_s: [2, 0.05],
};
const OPTIONS = new Set([
  'prefix', 'nsqd', 'nsqd_http', 'msg_timeout_s', 'visibility_timeout_s', ...Object.keys(NUMBERS),
]);

// nsq://lookupd:4161[,lookupd2:4161]?options and/or nsq://?nsqd=host:4150[,...]&nsqd_http=...
function parseNsqUrl(url) {
  const match = /^nsq:\/\/([^/?#]*)\/?(?:\?([^#]*))?$/.exec(url);
  if (!match || match[1].includes('@')) {
    throw new Error(
      `must be nsq://lookupd:4161[,lookupd:4161][?options] or nsq://?nsqd=host:4150[,...] ` +
        `(no user, path or fragment), got ${url}`,
    );
  }
  const [opts, unknown] = queryOptions(match[2] || '');
  const lookupdHttp = addresses(match[1], 'lookupd address');
  const nsqd = nsqdNodes(opts.nsqd || '', opts.nsqd_http || '');
  if (!lookupdHttp.length && !nsqd.length) {
    throw new Error(`${url} names no nsqlookupd (nsq://host:4161) and no nsqd (?nsqd=)`);
  }
  // visibility_timeout_s is the name the other buses use for the same thing
  const timeoutName = opts.msg_timeout_s ? 'msg_timeout_s' : 'visibility_timeout_s';
  const timeout = opts[timeoutName];
  const n = (name) => number(name, opts[name] ?? String(NUMBERS[name][0]), NUMBERS[name][1]);
  return {
    lookupdHttp,
    nsqd,
    unknown,
    prefix: opts.prefix || '',
    msgTimeoutMs: timeout ? Math.round(1000 * number(timeoutName, timeout, 1)) : null,
    maxReqTimeoutMs: 1000 * n('max_req_timeout_s'),
    lookupdPollIntervalMs: 1000 * n('lookupd_poll_interval_s'),
    heartbeatIntervalMs: 1000 * Math.trunc(n('heartbeat_interval_s')),
    outputBufferTimeoutMs: Math.trunc(n('output_buffer_timeout_ms')),
    dialTimeoutMs: 1000 * n('dial_timeout_s'),
  };
}

// [options, unknown names] as Python's dict(parse_qsl(query)): blank values dropped, the
// last of a repeated key wins. Unknown names are for the caller to log, not refused: one
// URL is often shared by processes of different versions.
function queryOptions(query) {
  const opts = {};
  const unknown = new Set();
  for (const [key, value] of new URLSearchParams(query)) {
    if (!OPTIONS.has(key)) unknown.add(key);
    else if (value) opts[key] = value;
  }
  return [opts, [...unknown].sort()];
}

function addresses(raw, what) {
  const out = [];
  for (const item of raw.split(',').map((a) => a.trim())) {
    if (!item) continue;
    const i = item.lastIndexOf(':');
    if (i <= 0 || !/^[0-9]+$/.test(item.slice(i + 1))) {
      throw new Error(`${what} ${item} must be HOST:PORT`);
    }
    out.push(item);
  }
  return out;
}

function nsqdNodes(tcpRaw, httpRaw) {
  const tcp = addresses(tcpRaw, 'nsqd address');
  let http = addresses(httpRaw, 'nsqd_http address');
  if (http.length && http.length !== tcp.length) {
    throw new Error('nsqd_http must list one HTTP address per nsqd address');
  }
  if (!http.length) { // nsqd's defaults: TCP 4150, HTTP 4151
    http = tcp.map((a) => `${a.slice(0, a.lastIndexOf(':'))}:${Number(a.slice(a.lastIndexOf(':') + 1)) + 1}`);
  }
  return tcp.map((address, i) => ({ tcp: address, http: http[i] }));
}

function number(name, raw, minimum) {
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value)) {
    throw new Error(`option ${name} must be a number, got '${raw}'`);
  }
  if (value < minimum) throw new Error(`option ${name} must be at least ${minimum}, got '${raw}'`);
  return value;
}

function splitAddress(address) {
  const i = address.lastIndexOf(':');
  return [address.slice(0, i).replace(/^\[|\]$/g, ''), Number(address.slice(i + 1))];
}

// -- names ------------------------------------------------------------------------------------

// The NSQ name of a kubefuncs topic: the URL's prefix + the name, checked against NSQ's rule.
function wireName(prefix, name) {
  const wire = prefix + name;
  if (!WIRE_NAME.test(wire)) {
    throw new Error(`'${wire}' is not a valid NSQ name (1-64 of [A-Za-z0-9._-])`);
  }
  return wire;
}

// The per-channel topic <topic>.<channel>.<kind> (kind: dead or replay); when that breaks
// NSQ's 64-character rule, or the topic is ephemeral,
// <topic[:30]>.<channel[:16]>.<8 hex of sha1("<topic>/<channel>")>.<kind>. Lengths and cuts
// count code points, as Python's do.
function sideTopic(topic, channel, kind) {
  const name = `${topic}.${channel}.${kind}`;
  if (Array.from(name).length <= 64 && !name.includes('#')) return name;
  const digest = crypto.createHash('sha1').update(`${topic}/${channel}`, 'utf8').digest('hex');
  const cut = (part, limit) => Array.from(part.replaceAll('#ephemeral', '')).slice(0, limit).join('');
  return `${cut(topic, 30)}.${cut(channel, 16)}.${digest.slice(0, 8)}.${kind}`;
}

// [reply topic, nsqd address] of kf.r.<32 hex>#ephemeral@<host:port>, else null.
function parseReplyAddress(address) {
  const at = address.lastIndexOf('@');
  if (at < 0) return null;
  const topic = address.slice(0, at);
  const nsqd = address.slice(at + 1);
  if (!REPLY_TOPIC.test(topic) || !nsqd.includes(':')) return null;
  return [topic, nsqd];
}

// -- max in flight over several connections ---------------------------------------------------

// RDY per connection: its unsettled count plus a share of the free slots. Shares are equal;
// the remainder goes to primary connections first (the channel's topic before its replay
// topic; the other way round on every fourth offset), starting at `offset` within each
// group, so that rotating `offset` gives every connection its turn.
function allot(inFlight, limit, offset, primary = null) {
  const count = inFlight.length;
  if (!count) return [];
  const free = Math.max(0, limit - inFlight.reduce((a, b) => a + b, 0));
  const base = Math.floor(free / count);
  const extra = free % count;
  const first = primary || inFlight.map(() => true);
  let order = [first.map((p, i) => (p ? i : -1)).filter((i) => i >= 0),
    first.map((p, i) => (p ? -1 : i)).filter((i) => i >= 0)];
  if (offset % 4 === 3) order = order.reverse();
  const position = new Map();
  let start = 0;
  for (const group of order) {
    group.forEach((i, rank) => position.set(i, start + mod(rank - offset, group.length)));
    start += group.length;
  }
  return inFlight.map((held, i) => held + base + (position.get(i) < extra ? 1 : 0));
}

const mod = (a, n) => ((a % n) + n) % n; // Python's % for a negative a

module.exports = { allot, parseNsqUrl, parseReplyAddress, sideTopic, splitAddress, wireName };
