'use strict';
// A kubefuncs function in Node.js: serves one topic on Valkey or NSQ exactly as
// `python -m kubefuncs` does (docs/protocol.md, docs/other-languages.md).
// Run: KF_TOPIC=upper node function.js

const http = require('node:http');
const path = require('node:path');
const wire = require('./wire');
const { Bus } = require('./bus');
const { parseNsqUrl, wireName } = require('./nsq_config');
// ./bus_nsq (its connection code, node:net, node:os) is required by openBus on NSQ only

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
    batch: number(env, 'KF_BATCH', 0, 1, true), // 0: the `batch` option of the Runtime decides
    batchWaitMs: 1000 * number(env, 'KF_BATCH_WAIT_S', 0.01, 0),
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
  if (!isNsq(settings.busUrl)) return new Bus(settings);
  const { NsqBus } = require('./bus_nsq');
  return new NsqBus(settings, log);
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

// A batch handler, `new Runtime(settings, handler, { batch: 100 })`, is
// `async (payloads, ctxs) => results`, as in the Python runtime (client/_batch.py): up to
// `batch` messages (KF_BATCH overrides it) gathered for at most KF_BATCH_WAIT_S; malformed,
// expired and unserved ones are settled before the batch forms; it returns one result per
// payload (an Error instance fails that message alone) or throws to fail them all, each by
// its own attempt count; KF_TIMEOUT_S covers the call; KF_CONCURRENCY counts batches.
class Runtime {
  constructor(settings, handler, { lifespan = null, bus = null, batch = 0 } = {}) {
    if (settings.batch && !batch) {
      throw new Error('KF_BATCH is set, but the handler is not a batch handler: pass { batch: N } to the Runtime');
    }
    this.batchSize = batch ? settings.batch || batch : 0;
    this.open = []; // the batch being gathered
    this.batchTimer = null;
    this.s = settings;
    this.handler = handler;
    this.lifespan = lifespan;
    this.state = {};
    this.cleanup = null; // what the lifespan returned: its shutdown
    this.exitCode = 0;
    this.bus = bus || openBus(settings);
    this.free = settings.concurrency * (this.batchSize || 1); // messages taken at once
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
        for (const m of await this.bus.fetch(this.free)) {
          if (this.batchSize) this.collect(m);
          else this.start(m);
        }
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
    this.track(this.process(m), 1);
  }

  track(work, messages) {
    const task = work
      .catch((e) => log('error', `could not settle; the bus redelivers it: ${e.message}`))
      .finally(() => {
        this.inFlight.delete(task);
        this.free += messages;
        const wakeUp = this.wakeUp;
        this.wakeUp = null;
        if (wakeUp) wakeUp();
      });
    this.inFlight.add(task);
  }

  // A message joins the open batch; the batch goes when full or batchWaitMs after its first.
  collect(m) {
    this.free -= 1;
    this.open.push(m);
    if (this.open.length >= this.batchSize) this.flush();
    else if (!this.batchTimer) this.batchTimer = setTimeout(() => this.flush(), this.s.batchWaitMs);
  }

  flush() {
    clearTimeout(this.batchTimer);
    this.batchTimer = null;
    if (this.open.length === 0) return;
    const ms = this.open;
    this.open = [];
    this.track(this.processBatch(ms), ms.length);
  }

  async processBatch(ms) {
    const admitted = [];
    for (const m of ms) {
      try {
        const env = await this.admit(m);
        if (env) admitted.push([m, env]);
      } catch (e) {
        log('error', `could not settle; the bus redelivers it: ${e.message}`);
      }
    }
    if (admitted.length === 0) return;
    let results;
    try {
      results = await this.invokeBatch(admitted);
    } catch (err) {
      await this.settleAll(admitted, () => err);
      return;
    }
    await this.settleAll(admitted, (i) => results[i]);
  }

  // Settle each message by its outcome (a result, or the Error that fails it), concurrently.
  settleAll(admitted, outcome) {
    return Promise.all(admitted.map(async ([m, env], i) => {
      const extra = { message_id: env.id, attempt: m.attempt };
      const result = outcome(i);
      try {
        if (result instanceof Error) await this.failed(m, env, result, extra);
        else await this.settle(m, env, result, extra);
      } catch (e) {
        log('error', `could not settle; the bus redelivers it: ${e.message}`, extra);
      }
    }));
  }

  async invokeBatch(admitted) {
    const ctxs = admitted.map(([m, env]) => this.context(env, m));
    const touch = setInterval(() => {
      for (const [m] of admitted) this.bus.touch(m).catch(() => {});
    }, this.bus.visibilityMs / 3);
    try {
      const results = await withTimeout(this.handler(admitted.map(([, env]) => env.payload), ctxs),
        this.s.timeoutMs, `took longer than ${this.s.timeoutMs / 1000}s`);
      if (!Array.isArray(results) || results.length !== admitted.length) {
        throw new TypeError(`a batch handler must return an array of ${admitted.length} results ` +
          '(one per payload, an Error to fail one)');
      }
      return results;
    } finally {
      clearInterval(touch);
    }
  }

  context(env, m) {
    return { id: env.id, kind: env.kind, attempt: m.attempt, headers: env.headers, state: this.state };
  }

  // One message: decode, skip if expired, run, reply, then ack (reply first: at-least-once).
  async process(m) {
    const env = await this.admit(m);
    if (!env) return undefined;
    const extra = { message_id: env.id, attempt: m.attempt };
    let result;
    try {
      result = await this.invoke(env, m);
    } catch (err) {
      return this.failed(m, env, err, extra);
    }
    return this.settle(m, env, result, extra);
  }

  // The envelope of a message the handler should see; null when it was settled here
  // (malformed: dead-lettered; past its deadline: skipped; an unserved kind: dead-lettered).
  async admit(m) {
    if (m.malformed) {
      log('warn', `malformed entry dead-lettered: ${m.malformed}`, { attempt: m.attempt });
      await this.bus.deadLetter(m, `malformed entry: ${m.malformed}`);
      return null;
    }
    let env;
    try {
      env = wire.decode(m.body);
    } catch (e) {
      log('warn', `malformed message dead-lettered: ${e.message}`, { attempt: m.attempt });
      await this.bus.deadLetter(m, `malformed: ${e.message}`);
      return null;
    }
    const extra = { message_id: env.id, attempt: m.attempt };
    if (wire.expired(env)) {
      log('info', 'skipped: past its deadline', extra);
      await this.bus.ack(m);
      return null;
    }
    if (!SERVED_KINDS.has(env.kind)) {
      // never run: answer a waiting caller, then keep it as a dead letter
      const err = Object.assign(new Error(`a function does not serve ${env.kind} messages`),
        { name: 'UnsupportedKind' });
      log('warn', `unsupported kind dead-lettered: ${env.kind}`, extra);
      if (env.reply_to) await this.replyError(env, err);
      await this.bus.deadLetter(m, `UnsupportedKind: ${err.message}`);
      return null;
    }
    return env;
  }

  // Reply with a handler's result (when a caller waits), then ack.
  async settle(m, env, result, extra) {
    try {
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
    const ctx = this.context(env, m);
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
    this.flush(); // what was gathered is handled with the rest of the in-flight work
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
// CommonJS modules are required; ES modules (.mjs, or "type": "module") are imported.
async function loadHandler(env) {
  if (!env.KF_HANDLER) return handle;
  const [mod, name] = env.KF_HANDLER.split(':');
  if (!mod || !name) throw new Error(`KF_HANDLER must look like module:export, got ${env.KF_HANDLER}`);
  const file = path.resolve(env.KF_SOURCE_DIR || process.cwd(), mod);
  let loaded;
  try {
    loaded = await loadModule(file);
  } catch (e) {
    throw new Error(`KF_HANDLER: cannot load ${file}: ${e.message}`);
  }
  if (typeof loaded[name] !== 'function') throw new Error(`KF_HANDLER: ${file} exports no function ${name}`);
  return loaded[name];
}

async function loadModule(file) {
  const resolved = require.resolve(file);
  if (!isEsModule(resolved)) return require(resolved);
  const { pathToFileURL } = require('node:url');
  const folders = (process.env.NODE_PATH || '').split(path.delimiter).filter(Boolean);
  if (folders.length) {
    require('node:module').register('./esm_paths.mjs', pathToFileURL(__filename), { data: { folders } });
  }
  return import(pathToFileURL(resolved).href);
}

// As Node decides: .mjs, or .js under a package.json with "type": "module".
function isEsModule(file) {
  if (file.endsWith('.mjs')) return true;
  if (!file.endsWith('.js')) return false;
  const fs = require('node:fs');
  for (let dir = path.dirname(fs.realpathSync(file)); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, 'utf8')).type === 'module';
      } catch {
        return false;
      }
    }
    if (path.dirname(dir) === dir) return false;
  }
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
    handler = await loadHandler(process.env);
  } catch (e) {
    process.stderr.write(`kubefuncs-node: ${e.message}\n`);
    process.exit(2);
  }
  let runtime;
  try {
    runtime = new Runtime(settings, handler);
  } catch (e) {
    process.stderr.write(`kubefuncs-node: ${e.message}\n`);
    process.exit(2);
  }
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

const { declare } = require('./declare');

module.exports = { declare, handle, loadHandler, openBus, settingsFromEnv, toHttpResponse, LifespanFailed, Runtime };
