'use strict';
// A kubefuncs function in Node.js: serves one topic on Valkey or NSQ exactly as
// `python -m kubefuncs` does (docs/protocol.md, docs/other-languages.md).
// Run: KF_TOPIC=upper node function.js

const http = require('node:http');
const path = require('node:path');
const wire = require('./wire');
const { Bus } = require('./bus');
const { NsqBus } = require('./bus_nsq');
const { parseNsqUrl, wireName } = require('./nsq_config');

const SERVED_KINDS = new Set(['event', 'request', 'http-request']);

// -- the work: upper-case text --------------------------------------------------------------

async function handle(payload, ctx) {
  if (wire.isMap(payload) && 'conformance' in payload) return conformance(payload, ctx);
  if (ctx.kind === 'http-request') return upperHttp(payload);
  if (payload === 'fail') throw new Error('asked to fail');
  if (typeof payload !== 'string') throw new TypeError(`expected a string, got ${typeof payload}`);
  return payload.toUpperCase();
}

function upperHttp(request) {
  const text = Buffer.from(request.body).toString('utf8');
  if (text === 'fail') throw new Error('asked to fail');
  const headers = { 'content-type': 'text/plain; charset=utf-8' };
  return { status: 200, headers, body: Buffer.from(text.toUpperCase()) };
}

// The conventions `functl conformance` drives a function with (docs/protocol.md).
async function conformance(payload, ctx) {
  if (payload.conformance === 'fail') throw new Error('conformance: asked to fail');
  if (payload.conformance !== 'echo') throw new Error(`unknown conformance ${payload.conformance}`);
  if (payload.sleep_ms) await sleep(payload.sleep_ms);
  return { value: payload.value ?? null, attempt: ctx.attempt };
}

// -- settings: a pure function of the environment --------------------------------------------

function settingsFromEnv(env) {
  const topic = name(env, 'KF_TOPIC', env.KF_TOPIC);
  return {
    busUrl: busUrl(env.KF_BUS_URL || 'valkey://localhost:6379/0', topic),
    password: env.KF_BUS_PASSWORD || undefined,
    topic,
    channel: name(env, 'KF_CHANNEL', env.KF_CHANNEL || env.KF_FUNCTION_NAME || topic),
    concurrency: number(env, 'KF_CONCURRENCY', 16, 1, true),
    maxAttempts: number(env, 'KF_MAX_ATTEMPTS', 5, 1, true),
    timeoutMs: 1000 * number(env, 'KF_TIMEOUT_S', 30, 0.001),
    backoffMs: 1000 * number(env, 'KF_BACKOFF_S', 1, 0),
    backoffMaxMs: 1000 * number(env, 'KF_BACKOFF_MAX_S', 300, 0),
    graceMs: 1000 * number(env, 'KF_GRACE_S', 25, 0),
    startupTimeoutMs: 1000 * number(env, 'KF_STARTUP_TIMEOUT_S', 60, 0.001),
    shutdownTimeoutMs: 1000 * number(env, 'KF_SHUTDOWN_TIMEOUT_S', 10, 0),
    healthAddr: env.KF_HEALTH_ADDR ?? '0.0.0.0:8081',
  };
}

function name(env, variable, value) {
  if (!value) throw new Error(`${variable} is not set`);
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(value || '')) {
    throw new Error(`${variable} must be 1-64 of letters, digits, '.', '_' or '-', got '${value ?? ''}'`);
  }
  return value;
}

// valkey://, redis:// (and their TLS forms) or nsq://, checked at start.
function busUrl(url, topic) {
  if (!isNsq(url)) {
    if (!/^(valkeys?|rediss?):\/\//.test(url)) {
      throw new Error(`KF_BUS_URL must be a valkey://, redis:// or nsq:// URL, got ${url}`);
    }
    return url;
  }
  let prefix;
  try {
    prefix = parseNsqUrl(url).prefix;
  } catch (e) {
    throw new Error(`KF_BUS_URL is not a usable NSQ URL: ${e.message}`);
  }
  try {
    wireName(prefix, topic);
  } catch (e) {
    throw new Error(`KF_TOPIC with the bus URL's prefix: ${e.message}`);
  }
  return url;
}

const isNsq = (url) => url.startsWith('nsq://');

// The binding for the bus URL's scheme: the one place that picks one.
function openBus(settings) {
  return isNsq(settings.busUrl) ? new NsqBus(settings, log) : new Bus(settings);
}

function number(env, variable, fallback, minimum, integer = false) {
  if (env[variable] === undefined) return fallback;
  const value = Number(env[variable]);
  if (env[variable].trim() === '' || Number.isNaN(value) || (integer && !Number.isInteger(value))) {
    throw new Error(`${variable} must be ${integer ? 'an integer' : 'a number'}, got '${env[variable]}'`);
  }
  if (value < minimum) throw new Error(`${variable} must be at least ${minimum}, got '${env[variable]}'`);
  return value;
}

// -- the runtime -------------------------------------------------------------------------------

// A lifespan, as in the Python runtime: `async (service) => cleanup` runs before the first
// message (the process is ready only after it resolved); what it puts in `service.state`
// every handler reads as `ctx.state`; the function it may return runs after the drain.
class LifespanFailed extends Error {
  constructor(message, cause) {
    super(message, { cause });
    this.name = 'LifespanFailed';
  }
}

class Runtime {
  constructor(settings, handler, { lifespan = null, bus = null } = {}) {
    this.s = settings;
    this.handler = handler;
    this.lifespan = lifespan;
    this.state = {};
    this.cleanup = null; // what the lifespan returned: its shutdown
    this.exitCode = 0;
    this.bus = bus || openBus(settings);
    this.free = settings.concurrency;
    this.wakeUp = null; // resolves when a slot frees up
    this.inFlight = new Set();
    this.stopping = false;
    this.consuming = false;
  }

  // The lifespan's startup, within KF_STARTUP_TIMEOUT_S; LifespanFailed otherwise.
  async startup() {
    if (!this.lifespan) return;
    const service = { topic: this.s.topic, channel: this.s.channel, settings: this.s, state: this.state, log };
    const seconds = this.s.startupTimeoutMs / 1000;
    let result;
    try {
      result = await withTimeout(this.lifespan(service), this.s.startupTimeoutMs,
        `startup took longer than ${seconds} s`);
    } catch (e) {
      throw new LifespanFailed(e.name === 'TimeoutError' ? e.message : `startup failed: ${e.name}: ${e.message}`, e);
    }
    if (typeof result === 'function') this.cleanup = result;
  }

  // The lifespan's shutdown, after the drain, within KF_SHUTDOWN_TIMEOUT_S: a failure is
  // logged and makes the exit code 1.
  async shutdown() {
    if (!this.cleanup) return;
    const cleanup = this.cleanup;
    this.cleanup = null;
    try {
      await withTimeout(cleanup(), this.s.shutdownTimeoutMs,
        `shutdown took longer than ${this.s.shutdownTimeoutMs / 1000} s`);
    } catch (e) {
      log('error', `shutdown failed: ${e.name}: ${e.message}`, { stack: e.stack });
      this.exitCode = 1;
    }
  }

  async run() {
    await this.startup();
    if (this.stopping) return;
    await this.bus.ensureGroups();
    this.consuming = true;
    log('info', `consuming ${this.s.topic} as channel ${this.s.channel}`);
    const housekeeping = setInterval(() => this.bus.moveDue().catch(() => {}), 1000);
    let failures = 0;
    while (!this.stopping) {
      if (this.free === 0) await new Promise((resolve) => { this.wakeUp = resolve; });
      if (this.stopping) break;
      try {
        for (const m of await this.bus.fetch(this.free)) this.start(m);
        failures = 0;
      } catch (e) {
        if (this.stopping) break;
        log('warn', `reading failed (${e.message}); retrying`);
        await sleep(Math.min(10000, 100 * 2 ** ++failures));
      }
    }
    clearInterval(housekeeping);
  }

  start(m) {
    this.free -= 1;
    const task = this.process(m)
      .catch((e) => log('error', `could not settle; the bus redelivers it: ${e.message}`))
      .finally(() => {
        this.inFlight.delete(task);
        this.free += 1;
        const wakeUp = this.wakeUp;
        this.wakeUp = null;
        if (wakeUp) wakeUp();
      });
    this.inFlight.add(task);
  }

  // One message: decode, skip if expired, run, reply, then ack (reply first: at-least-once).
  async process(m) {
    if (m.malformed) {
      log('warn', `malformed entry dead-lettered: ${m.malformed}`, { attempt: m.attempt });
      return this.bus.deadLetter(m, `malformed entry: ${m.malformed}`);
    }
    let env;
    try {
      env = wire.decode(m.body);
    } catch (e) {
      log('warn', `malformed message dead-lettered: ${e.message}`, { attempt: m.attempt });
      return this.bus.deadLetter(m, `malformed: ${e.message}`);
    }
    const extra = { message_id: env.id, attempt: m.attempt };
    if (wire.expired(env)) {
      log('info', 'skipped: past its deadline', extra);
      return this.bus.ack(m);
    }
    if (!SERVED_KINDS.has(env.kind)) {
      // never run: answer a waiting caller, then keep it as a dead letter
      const err = Object.assign(new Error(`a function does not serve ${env.kind} messages`),
        { name: 'UnsupportedKind' });
      log('warn', `unsupported kind dead-lettered: ${env.kind}`, extra);
      if (env.reply_to) await this.replyError(env, err);
      return this.bus.deadLetter(m, `UnsupportedKind: ${err.message}`);
    }
    try {
      const result = await this.invoke(env, m);
      if (env.reply_to) await this.bus.reply(env.reply_to, wire.encode(toReply(env, result)));
    } catch (err) {
      if (err && err.undeliverable) {
        // the address can never take a reply: keep the message, do not run it again
        log('warn', `reply undeliverable, dead-lettered: ${err.message}`, extra);
        return this.bus.deadLetter(m, `Undeliverable: ${err.message}`);
      }
      return this.failed(m, env, err, extra);
    }
    return this.bus.ack(m);
  }

  async invoke(env, m) {
    const ctx = { id: env.id, kind: env.kind, attempt: m.attempt, headers: env.headers, state: this.state };
    const touch = setInterval(() => this.bus.touch(m).catch(() => {}), this.bus.visibilityMs / 3);
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(timeoutError(this.s.timeoutMs)), this.s.timeoutMs);
    });
    try {
      return await Promise.race([this.handler(env.payload, ctx), timeout]);
    } finally {
      clearInterval(touch);
      clearTimeout(timer);
    }
  }

  // A waiting caller gets an error reply at once; otherwise retry with backoff; dead-letter
  // after the last attempt.
  async failed(m, env, err, extra) {
    const reason = `${err.name}: ${err.message}`;
    const waits = Boolean(env.reply_to) && !wire.expired(env);
    log('warn', `handler failed: ${reason}`, extra);
    if (waits) await this.replyError(env, err);
    if (m.attempt >= this.s.maxAttempts) return this.bus.deadLetter(m, reason);
    if (waits) return this.bus.ack(m);
    const ceiling = Math.min(this.s.backoffMaxMs, this.s.backoffMs * 2 ** (m.attempt - 1));
    return this.bus.retry(m, ceiling * (1 - Math.random() * 0.5));
  }

  async replyError(env, err) {
    const info = { type: err.name, message: err.message || err.name, retryable: false };
    if (err.name === 'TimeoutError') info.status = 504;
    try {
      await this.bus.reply(env.reply_to, wire.encode(wire.replyFor(env, info, 'error')));
    } catch (e) {
      log('warn', `could not send the error reply: ${e.message}`, { message_id: env.id });
    }
  }

  // SIGTERM: stop taking messages, let in-flight work finish within the grace period. What
  // is still unsettled then stays pending and is redelivered after the visibility timeout
  // (Valkey: taken over by another consumer; NSQ: nsqd's msg_timeout).
  async stop() {
    if (this.stopping) return;
    this.stopping = true;
    this.bus.stopReading();
    if (this.wakeUp) this.wakeUp();
    log('info', `draining ${this.inFlight.size} in-flight message(s)`);
    await withTimeout(Promise.allSettled([...this.inFlight]), this.s.graceMs, 'drain').catch(() => {});
    await this.shutdown();
    await this.bus.close();
  }
}

async function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(message), { name: 'TimeoutError' })), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function toReply(request, result) {
  if (request.kind !== 'http-request') return wire.replyFor(request, result ?? null);
  return wire.replyFor(request, toHttpResponse(result), 'http-response');
}

// Return values to HTTP as the Python runtime maps them.
function toHttpResponse(result) {
  if (wire.isMap(result) && 'status' in result) {
    return { status: result.status, headers: result.headers || {}, body: result.body ?? Buffer.alloc(0) };
  }
  if (result === undefined || result === null) return { status: 204, headers: {}, body: Buffer.alloc(0) };
  if (result instanceof Uint8Array) {
    return { status: 200, headers: { 'content-type': 'application/octet-stream' }, body: result };
  }
  if (typeof result === 'string') {
    return { status: 200, headers: { 'content-type': 'text/plain; charset=utf-8' }, body: Buffer.from(result) };
  }
  return { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(result)) };
}

function timeoutError(ms) {
  const e = new Error(`took longer than ${ms / 1000}s`);
  e.name = 'TimeoutError';
  return e;
}

// /healthz: alive; /readyz: consuming and connected to the bus.
function serveHealth(addr, runtime) {
  if (!addr) return null;
  const i = addr.lastIndexOf(':');
  const server = http.createServer((req, res) => {
    const ok = req.url === '/healthz' ||
      (req.url === '/readyz' && runtime.consuming && runtime.bus.connected && !runtime.stopping);
    res.writeHead(ok ? 200 : req.url === '/readyz' ? 503 : 404).end(ok ? 'ok\n' : '');
  });
  return server.listen(Number(addr.slice(i + 1)), addr.slice(0, i));
}

// A source function (functl's source:): KF_HANDLER=module:export, module resolved in
// KF_SOURCE_DIR (the ConfigMap functl mounts); without it, the upper-casing handle above.
function loadHandler(env) {
  if (!env.KF_HANDLER) return handle;
  const [mod, name] = env.KF_HANDLER.split(':');
  if (!mod || !name) throw new Error(`KF_HANDLER must look like module:export, got ${env.KF_HANDLER}`);
  const file = path.resolve(env.KF_SOURCE_DIR || process.cwd(), mod);
  let loaded;
  try {
    loaded = require(file);
  } catch (e) {
    throw new Error(`KF_HANDLER: cannot load ${file}: ${e.message}`);
  }
  if (typeof loaded[name] !== 'function') throw new Error(`KF_HANDLER: ${file} exports no function ${name}`);
  return loaded[name];
}

function log(level, message, extra = {}) {
  const line = { time: new Date().toISOString(), level, logger: 'kubefuncs-node', message, ...extra };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  let settings;
  let handler;
  try {
    settings = settingsFromEnv(process.env);
    handler = loadHandler(process.env);
  } catch (e) {
    process.stderr.write(`kubefuncs-node: ${e.message}\n`);
    process.exit(2);
  }
  const runtime = new Runtime(settings, handler);
  const health = serveHealth(settings.healthAddr, runtime);
  const shutdown = () => runtime.stop().then(() => {
    if (health) health.close();
    log('info', 'stopped');
    process.exit(runtime.exitCode);
  });
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  try {
    await runtime.run();
  } catch (e) {
    if (!(e instanceof LifespanFailed)) throw e;
    log('error', e.message, { stack: e.cause && e.cause.stack });
    process.exit(1);
  }
}

if (require.main === module) main();

module.exports = { handle, loadHandler, openBus, settingsFromEnv, toHttpResponse, LifespanFailed, Runtime };
