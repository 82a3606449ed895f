#!/usr/bin/env node
// Send one MO through a running simulator (`make smsc-sim`) and print the gateway's answer:
//   node tests/peers/smsc/send_mo.js --text STOP --from 14155550123 --to 12345 [--control 2776]
// ESME_ROK (0) means the gateway committed it; 0x64 (ESME_RX_T_APPN) means "try again later".
'use strict';
const http = require('http');

const args = { text: 'STOP', from: '14155550123', to: '12345', control: '2776', coding: '0' };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const body = JSON.stringify({ source: args.from, dest: args.to, text: args.text, coding: Number(args.coding) });
const req = http.request({ host: '127.0.0.1', port: Number(args.control), method: 'POST', path: '/mo',
  headers: { 'content-type': 'application/json' } }, (res) => {
  let data = '';
  res.on('data', (c) => { data += c; });
  res.on('end', () => {
    const result = JSON.parse(data);
    if (result.status === undefined) { console.log(data); process.exit(1); }
    const name = { 0: 'ESME_ROK', 0x64: 'ESME_RX_T_APPN', 0x65: 'ESME_RX_P_APPN', 0x0b: 'ESME_RINVDSTADR' }[result.status] || '';
    console.log(`deliver_sm_resp: 0x${result.status.toString(16).padStart(8, '0')} ${name}`);
    // The reply, if any, shows up in the simulator's log (GET /state) a moment later.
    setTimeout(() => {
      http.get({ host: '127.0.0.1', port: Number(args.control), path: '/state' }, (r) => {
        let s = '';
        r.on('data', (c) => { s += c; });
        r.on('end', () => {
          const replies = JSON.parse(s).submits.filter((m) => m.dest === args.from.replace(/^\+/, ''));
          for (const m of replies) console.log(`submit_sm ${m.source} -> ${m.dest}: ${m.text}`);
        });
      });
    }, 1000);
  });
});
req.on('error', (e) => { console.error(`simulator not reachable: ${e.message} (run make smsc-sim)`); process.exit(2); });
req.end(body);
