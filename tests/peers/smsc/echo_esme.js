#!/usr/bin/env node
// The benchmark's ceiling: an ESME that does nothing but answer. It binds as a transceiver,
// acknowledges every deliver_sm at once (no database, no queue) and, for a text that is not a
// receipt, submits one fixed reply to its sender. bench/run_smpp.py floods it through the same
// SMSC simulator as the gateway and Kannel, so the replies per second it reaches are what the
// simulator and this machine can carry; a system measured near that figure is measuring the
// load generator, not itself.
//
// It frames PDUs by hand (SMPP 3.4 §3.2: a 16-octet header, command_length first) and writes
// what one read produced in one write, to spend as little CPU as a peer can.
//
//   node echo_esme.js --port N --system-id ID --password PW [--window 200] [--text REPLY]
'use strict';

const net = require('net');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const WINDOW = Number(args.window || 200);  // submit_sm outstanding at most (SMPP 3.4 §2.7)
const REPLY = Buffer.from(args.text || 'You are unsubscribed. Reply START to rejoin.', 'ascii');

const BIND_TRANSCEIVER = 0x09, DELIVER_SM = 0x05, SUBMIT_SM = 0x04, ENQUIRE_LINK = 0x15, UNBIND = 0x06;
const RESP = 0x80000000;

function header(length, id, status, seq) {
  const b = Buffer.allocUnsafe(16);
  b.writeUInt32BE(length, 0); b.writeUInt32BE(id >>> 0, 4); b.writeUInt32BE(status, 8); b.writeUInt32BE(seq, 12);
  return b;
}

function cstr(text) { return Buffer.concat([Buffer.from(text, 'latin1'), Buffer.from([0])]); }

function bind(seq) {
  const body = Buffer.concat([cstr(args['system-id'] || 'gateway'), cstr(args.password || 'secret'), cstr(''),
    Buffer.from([0x34, 0, 0]), cstr('')]);
  return Buffer.concat([header(16 + body.length, BIND_TRANSCEIVER, 0, seq), body]);
}

// submit_sm (SMPP 3.4 §4.4.1) from the short code to the texter, GSM default alphabet.
function submit(seq, from, to) {
  const body = Buffer.concat([Buffer.from([0, 0, 1]), from, Buffer.from([1, 1]), to,
    Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, REPLY.length]), REPLY]);
  return Buffer.concat([header(16 + body.length, SUBMIT_SM, 0, seq), body]);
}

// The C-octet string at `pos`, with its NUL, and the offset after it.
function field(buf, pos) { const end = buf.indexOf(0, pos); return [buf.subarray(pos, end + 1), end + 1]; }

const socket = net.connect(Number(args.port), '127.0.0.1');
socket.setNoDelay(true);
let pending = Buffer.alloc(0);
let seq = 1;
let outstanding = 0;
const waiting = [];   // [source, dest] of replies held back by the window
let out = [];

function queueSubmit(from, to) {
  if (outstanding >= WINDOW) { waiting.push([from, to]); return; }
  outstanding += 1;
  seq = seq % 0x7FFFFFFF + 1;
  out.push(submit(seq, from, to));
}

function onPdu(pdu) {
  const id = pdu.readUInt32BE(4) >>> 0, s = pdu.readUInt32BE(12);
  if (id === DELIVER_SM) {
    out.push(header(17, DELIVER_SM | RESP, 0, s), Buffer.from([0]));
    let pos = 16;
    [, pos] = field(pdu, pos);                 // service_type
    pos += 2;
    const [source, after] = field(pdu, pos);   // source_addr, NUL included
    pos = after + 2;
    const [dest, next] = field(pdu, pos);
    const esmClass = pdu[next];
    if ((esmClass & 0x3c) === 0) queueSubmit(Buffer.from(dest), Buffer.from(source));
  } else if (id === (SUBMIT_SM | RESP) >>> 0) {
    outstanding -= 1;
    while (waiting.length && outstanding < WINDOW) queueSubmit(...waiting.shift());
  } else if (id === ENQUIRE_LINK) {
    out.push(header(16, ENQUIRE_LINK | RESP, 0, s));
  } else if (id === UNBIND) {
    out.push(header(16, UNBIND | RESP, 0, s));
  } else if (id === (BIND_TRANSCEIVER | RESP) >>> 0) {
    if (pdu.readUInt32BE(8) !== 0) { process.stderr.write('bind refused\n'); process.exit(1); }
  }
}

socket.on('connect', () => socket.write(bind(seq)));
socket.on('data', (chunk) => {
  pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
  let pos = 0;
  while (pending.length - pos >= 16) {
    const length = pending.readUInt32BE(pos);
    if (pending.length - pos < length) break;
    onPdu(pending.subarray(pos, pos + length));
    pos += length;
  }
  pending = pending.subarray(pos);
  if (out.length) { socket.write(Buffer.concat(out)); out = []; }
});
socket.on('close', () => process.exit(0));
socket.on('error', () => process.exit(1));
process.on('SIGTERM', () => process.exit(0));
