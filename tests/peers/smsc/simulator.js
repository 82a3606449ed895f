#!/usr/bin/env node
// SMSC simulator built on node-smpp (npm `smpp`): the SMPP peer that tests, benchmarks and the
// `make smsc-sim` demo talk to. It shares no code with the gateway's codec, so a mistake in our
// framing or encodings shows up as a disagreement instead of cancelling out.
//
// It behaves like a store-and-forward SMSC (SMPP 3.4 §2.3): a deliver_sm that is answered
// with an error, times out, or is in flight when the bind drops is delivered again later, to
// whichever receiver is bound. Misbehaviour is switched on per test through a small HTTP
// control API (JSON in, JSON out) on a second port:
//
//   POST /mo      {source, dest, text | hex, coding, udh_hex, sar, payload, tlvs_hex, wait}
//   POST /flood   {count, source_base, dest, text, window, wait_replies, timeout_ms}
//   POST /mode    {bind, submit, submit_count, dlr, enquire_link, submit_delay_ms}
//   POST /drop    close every bound session now (mid-window)
//   POST /raw     {hex}: write raw bytes to a receiver session (malformed / truncated PDUs)
//   GET  /state   binds, submits, receipts answered, queue length
//   POST /reset   forget recorded submits and flood statistics
//
// On start it prints one JSON line: {"smpp_port": N, "control_port": M}.
'use strict';

const http = require('http');
const smpp = require('smpp');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const SYSTEM_ID = args['system-id'] || 'gateway';
const PASSWORD = args.password || 'secret';
const RETRY_MS = Number(args['retry-ms'] || 200);
const RESP_TIMEOUT_MS = Number(args['resp-timeout-ms'] || 10000);

const E = smpp.errors;
const mode = { bind: 'ok', submit: 'ok', submit_count: -1, dlr: true, enquire_link: 'ok', submit_delay_ms: 0 };
const bound = new Set();        // sessions bound and able to receive deliver_sm
const state = { binds: 0, bind_rejects: 0, submits: [], unbinds: 0, generic_nacks: 0, receipts_ok: 0, enquire_links: 0,
  acked: 0, errors: 0 };
let nextMsgId = 1;

// ---- the store-and-forward queue of deliver_sm ---------------------------------------------
// Items waiting for a receiver, first in first out. Array.prototype.shift() moves every
// element, so a 50,000-text flood spent most of its time there: a head index walks the
// array instead, and the consumed prefix is dropped once it is the larger part.
const queue = {
  items: [], head: 0,
  get length() { return this.items.length - this.head; },
  push(item) { this.items.push(item); },
  shift() {
    const item = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) { this.items = this.items.slice(this.head); this.head = 0; }
    return item;
  },
};
let window = 10;                // deliver_sm in flight per session
const items = new Map();        // id -> item (for statistics)
let nextItem = 1;

function receivers() { return [...bound].filter((s) => s.mode !== 'transmitter'); }

function encodeText(text, coding) {
  if (coding === 8) return smpp.encodings.UCS2.encode(text);
  if (coding === 3) return smpp.encodings.LATIN1.encode(text);
  if (coding === 1) return Buffer.from(text, 'ascii');
  return smpp.gsmCoder.encode(text, 0x00);  // GSM 03.38, one septet per octet (unpacked)
}

function buildDeliver(spec) {
  const body = spec.hex !== undefined ? Buffer.from(spec.hex, 'hex') : encodeText(spec.text || '', spec.coding || 0);
  const udh = spec.udh_hex ? Buffer.from(spec.udh_hex, 'hex') : Buffer.alloc(0);
  const pdu = {
    source_addr: spec.source, source_addr_ton: 1, source_addr_npi: 1,
    destination_addr: spec.dest, dest_addr_ton: 0, dest_addr_npi: 0,
    esm_class: (spec.esm_class || 0) | (udh.length ? 0x40 : 0),
    data_coding: spec.coding || 0,
  };
  const message = Buffer.concat([udh, body]);
  if (spec.payload) pdu.message_payload = message; else pdu.short_message = message;
  if (spec.sar) {
    pdu.sar_msg_ref_num = spec.sar.ref; pdu.sar_total_segments = spec.sar.total; pdu.sar_segment_seqnum = spec.sar.seq;
  }
  if (spec.receipted_message_id) { pdu.receipted_message_id = spec.receipted_message_id; pdu.message_state = spec.message_state; }
  let buf = new smpp.PDU('deliver_sm', pdu).toBuffer();
  if (spec.tlvs_hex) {   // TLVs node-smpp does not know, appended raw
    buf = Buffer.concat([buf, Buffer.from(spec.tlvs_hex, 'hex')]);
    buf.writeUInt32BE(buf.length, 0);
  }
  return buf;
}

// A flood's texts differ only in their source address: the first one is built by node-smpp
// and the others are copies with the digits written over, when the length is the same.
function floodFrame(spec) {
  const template = flood.template;
  if (template && template.text === spec.text && template.coding === spec.coding && template.dest === spec.dest
      && template.source.length === spec.source.length) {
    const frame = Buffer.from(template.frame);
    frame.write(spec.source, template.at, 'ascii');
    return frame;
  }
  const frame = buildDeliver(spec);
  const at = frame.indexOf(Buffer.from(spec.source + '\0', 'ascii'), 16);
  flood.template = { text: spec.text, coding: spec.coding, dest: spec.dest, source: spec.source, frame, at };
  return frame;
}

function enqueue(spec, onDone) {
  const frame = spec.flood ? floodFrame(spec) : buildDeliver(spec);
  const item = { id: nextItem++, spec, frame, attempts: 0, statuses: [], onDone, first: 0, acked: 0 };
  items.set(item.id, item);
  queue.push(item);
  pump();
  return item;
}

function pump() {
  for (const session of receivers()) {
    while (queue.length && session.inflight.size < window && session.socket.writable) {
      const item = queue.shift();
      sendItem(session, item);
    }
  }
}

// Everything written to a session in one event-loop turn leaves in one writev(): a syscall per
// PDU was the simulator's largest cost under a flood.
function cork(session) {
  if (session.corked) return;
  session.corked = true;
  session.socket.cork();
  process.nextTick(() => { session.corked = false; session.socket.uncork(); });
}

function sendItem(session, item) {
  cork(session);
  const seq = ++session.seq_out;
  const frame = Buffer.from(item.frame);
  frame.writeUInt32BE(seq, 12);
  item.attempts += 1;
  if (!item.first) {
    item.first = process.hrtime.bigint();
    // Latency runs from the first time the text is on the wire, not from when it was queued.
    if (item.spec.flood) flood.t0.set(item.spec.source, item.first);
  }
  const timer = setTimeout(() => { session.inflight.delete(seq); requeue(item, 'timeout'); pump(); }, RESP_TIMEOUT_MS);
  session.inflight.set(seq, { item, timer });
  session.socket.write(frame);
}

function requeue(item, status) {
  item.statuses.push(status);
  setTimeout(() => { queue.push(item); pump(); }, RETRY_MS);
}

function onDeliverResp(session, pdu) {
  cork(session);
  const entry = session.inflight.get(pdu.sequence_number);
  if (!entry) return;
  session.inflight.delete(pdu.sequence_number);
  clearTimeout(entry.timer);
  const item = entry.item;
  if (pdu.command_status === 0) {
    state.acked += 1;
    item.statuses.push(0);
    item.acked = process.hrtime.bigint();
    if (item.spec.is_receipt) state.receipts_ok += 1;
    if (item.onDone) item.onDone(item);
  } else if ((state.errors += 1) && item.spec.no_retry) {
    item.statuses.push(pdu.command_status);
    if (item.onDone) item.onDone(item);
  } else {
    requeue(item, pdu.command_status);   // the SMSC keeps it and retries (SMPP 3.4 §5.1.3)
  }
  pump();
}

// ---- replies (submit_sm) -------------------------------------------------------------------
const flood = { t0: new Map(), latencies: [], replies: 0, expected: 0, waiters: [], last: 0n, template: null };

function concatInfo(pdu) {
  const sm = pdu.short_message || {};
  const udh = (sm.udh || []).map((u) => Buffer.from(u));
  for (const u of udh) {
    if (u[0] === 0x00) return { ref: u[2], total: u[3], seq: u[4] };
    if (u[0] === 0x08) return { ref: u.readUInt16BE(2), total: u[4], seq: u[5] };
  }
  return null;
}

function onSubmit(session, pdu) {
  cork(session);
  const sm = pdu.short_message || {};
  const message = typeof sm === 'object' && !Buffer.isBuffer(sm) ? sm.message : sm;
  const concat = concatInfo(pdu);
  const record = {
    source: pdu.source_addr, dest: pdu.destination_addr, data_coding: pdu.data_coding,
    esm_class: pdu.esm_class, registered_delivery: pdu.registered_delivery,
    text: typeof message === 'string' ? message : Buffer.from(message || []).toString('hex'),
    udh_hex: (sm.udh || []).map((u) => Buffer.from(u).toString('hex')).join(''),
    concat, answered: null, message_id: null,
  };
  state.submits.push(record);
  const behaviour = mode.submit_count === 0 ? 'ok' : mode.submit;
  if (mode.submit_count > 0) mode.submit_count -= 1;
  if (behaviour === 'silent') return;
  if (behaviour === 'drop') { session.destroy(); return; }
  if (behaviour === 'generic_nack') {
    state.generic_nacks += 1;
    session.send(new smpp.PDU('generic_nack', { sequence_number: pdu.sequence_number, command_status: E.ESME_RSYSERR }));
    return;
  }
  const status = behaviour === 'throttle' ? E.ESME_RTHROTTLED : behaviour === 'msgqful' ? E.ESME_RMSGQFUL
    : behaviour === 'reject' ? E.ESME_RINVDSTADR : 0;
  const answer = () => {
    if (status) {
      record.answered = status;
      session.send(pdu.response({ command_status: status }));
      return;
    }
    const id = (nextMsgId++).toString(16).padStart(8, '0');
    record.answered = 0; record.message_id = id;
    session.send(pdu.response({ message_id: id }));
    countReply(record);
    if (mode.dlr && (pdu.registered_delivery & 0x03)) sendReceipt(record, id);
  };
  if (mode.submit_delay_ms) setTimeout(answer, mode.submit_delay_ms); else answer();
}

function countReply(record) {
  if (record.concat && record.concat.seq !== 1) return;  // count a message once, by its first part
  const t0 = flood.t0.get(record.dest);
  if (t0 === undefined) return;
  flood.t0.delete(record.dest);
  const now = process.hrtime.bigint();
  flood.latencies.push(Number(now - t0) / 1e6);
  flood.replies += 1; flood.last = now;
  if (flood.replies >= flood.expected) flood.waiters.splice(0).forEach((w) => w());
}

function stamp(date) {
  const p = (n) => String(n).padStart(2, '0');
  return p(date.getUTCFullYear() % 100) + p(date.getUTCMonth() + 1) + p(date.getUTCDate()) + p(date.getUTCHours()) + p(date.getUTCMinutes());
}

function sendReceipt(record, id) {
  const now = stamp(new Date());
  const text = `id:${id} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:`;
  enqueue({ source: record.dest, dest: record.source, text, coding: 0, esm_class: 0x04,
    receipted_message_id: id, message_state: 2, is_receipt: true });
}

// ---- the SMPP server -----------------------------------------------------------------------
const server = smpp.createServer((session) => {
  session.inflight = new Map(); session.seq_out = 0; session.mode = null;
  const bindAs = (kind) => (pdu) => {
    if (mode.bind === 'reject' || pdu.system_id !== SYSTEM_ID || pdu.password !== PASSWORD) {
      state.bind_rejects += 1;
      session.send(pdu.response({ command_status: E.ESME_RBINDFAIL }));
      return;
    }
    state.binds += 1; session.mode = kind; bound.add(session);
    session.send(pdu.response({ system_id: 'simsmsc' }));
    pump();
  };
  session.on('bind_transceiver', bindAs('transceiver'));
  session.on('bind_receiver', bindAs('receiver'));
  session.on('bind_transmitter', bindAs('transmitter'));
  session.on('submit_sm', (pdu) => onSubmit(session, pdu));
  session.on('deliver_sm_resp', (pdu) => onDeliverResp(session, pdu));
  session.on('generic_nack', (pdu) => { state.generic_nacks += 1; onDeliverResp(session, pdu); });
  session.on('enquire_link', (pdu) => {
    state.enquire_links += 1;
    if (mode.enquire_link === 'ok') session.send(pdu.response());
  });
  session.on('unbind', (pdu) => { state.unbinds += 1; bound.delete(session); session.send(pdu.response()); session.close(); });
  session.on('unknown', (pdu) => session.send(pdu.response()));
  const lost = () => {
    bound.delete(session);
    for (const [, entry] of session.inflight) { clearTimeout(entry.timer); requeue(entry.item, 'dropped'); }
    session.inflight.clear();
  };
  session.on('close', lost);
  session.on('error', () => { lost(); session.destroy(); });
});

// ---- the control API -----------------------------------------------------------------------
function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const routes = {
  'POST /mo': (body, reply) => {
    const spec = { ...body, no_retry: body.retry !== true };
    enqueue(spec, (item) => reply({ status: item.statuses[item.statuses.length - 1], attempts: item.attempts }));
  },
  'POST /flood': (body, reply) => {
    const count = body.count; window = body.window || window;
    const base = BigInt(body.source_base || '14155500000');
    const started = process.hrtime.bigint();
    let acked = 0;
    flood.latencies = []; flood.replies = 0; flood.expected = body.wait_replies ? count : 0;
    const finish = () => {
      const ackedAt = process.hrtime.bigint();
      const done = () => {
        const seconds = (t) => Number(t - started) / 1e9;
        reply({ count, acked, ack_seconds: seconds(ackedAt), replies: flood.replies,
          reply_seconds: flood.replies ? seconds(flood.last) : null,
          p50_ms: percentile(flood.latencies, 50), p99_ms: percentile(flood.latencies, 99),
          attempts: [...items.values()].reduce((n, it) => n + it.attempts, 0) });
      };
      if (!body.wait_replies || flood.replies >= count) { done(); return; }
      const timer = setTimeout(done, body.timeout_ms || 120000);
      flood.waiters.push(() => { clearTimeout(timer); done(); });
    };
    items.clear();
    for (let i = 0; i < count; i++) {
      const source = (base + BigInt(i)).toString();  // TON 1: international, no '+'
      enqueue({ source, dest: body.dest, text: body.text, coding: body.coding || 0, flood: true }, () => {
        acked += 1;
        if (acked === count) finish();
      });
    }
  },
  'POST /mode': (body, reply) => { Object.assign(mode, body); if (body.window) window = body.window; reply(mode); },
  'POST /drop': (body, reply) => { for (const s of [...bound]) s.destroy(); reply({ dropped: true }); },
  'POST /raw': (body, reply) => {
    const target = receivers()[0];
    if (!target) { reply({ error: 'no receiver bound' }); return; }
    target.socket.write(Buffer.from(body.hex, 'hex'));
    reply({ written: body.hex.length / 2 });
  },
  'GET /state': (body, reply) => reply({ ...state, bound: bound.size, receivers: receivers().length, queued: queue.length, mode }),
  'GET /summary': (body, reply) => {
    const dests = new Map();
    for (const m of state.submits) if (!m.concat || m.concat.seq === 1) dests.set(m.dest, (dests.get(m.dest) || 0) + 1);
    reply({ ...state, submits: state.submits.length, answered: state.submits.filter((m) => m.answered === 0).length,
      distinct_dests: dests.size, bound: bound.size, receivers: receivers().length, queued: queue.length });
  },
  'POST /reset': (body, reply) => { state.submits = []; flood.t0.clear(); flood.latencies = []; flood.replies = 0; reply({ reset: true }); },
};

const control = http.createServer((req, res) => {
  let data = '';
  req.on('data', (chunk) => { data += chunk; });
  req.on('end', () => {
    const route = routes[`${req.method} ${req.url.split('?')[0]}`];
    const reply = (obj) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
    if (!route) { res.writeHead(404); res.end('{}'); return; }
    try { route(data ? JSON.parse(data) : {}, reply); } catch (e) { res.writeHead(400); res.end(JSON.stringify({ error: String(e) })); }
  });
});

server.listen(Number(args.port || 0), '127.0.0.1', () => {
  control.listen(Number(args['control-port'] || 0), '127.0.0.1', () => {
    process.stdout.write(JSON.stringify({ smpp_port: server.address().port, control_port: control.address().port }) + '\n');
  });
});
process.on('SIGTERM', () => process.exit(0));
