#!/usr/bin/env node
// An echo server in Node.js that does not link libnetcluster: it takes
// its listening sockets as systemd passes them (sd_listen_fds(3):
// LISTEN_PID, LISTEN_FDS, fds from 3) with net.Server.listen({fd}), as
// netclusterd's "handler": "program" does. Each connection is greeted
// with "hello\r\n" and gets its bytes back; a connection whose first
// bytes are "pid\n" gets instead one line saying who answered. On
// SIGTERM it closes its listeners; open connections finish, and the
// process exits once nothing is left.
//
// With a message channel ("messages": true), Node's own IPC: a client
// line "broadcast JSON" is process.send(JSON) to the other workers, and
// each message that comes (process.on('message')) is logged as
// "inherit_echo.js: pid P message from ID: JSON".
'use strict';
const net = require('net');

const n = process.env.LISTEN_PID === String(process.pid) ?
  parseInt(process.env.LISTEN_FDS || '0', 10) : 0;
if (n === 0) {
  console.error('<3>inherit_echo.js: no sockets passed (LISTEN_FDS)');
  process.exit(1);
}
let open = 0;
const servers = [];
for (let i = 0; i < n; i++) {
  const server = net.createServer((c) => {
    let first = true;
    open++;
    c.on('error', () => {});
    c.on('close', () => { open--; });
    c.write('hello\r\n');
    c.on('data', (d) => {
      if (first && d.toString('latin1').startsWith('pid\n')) {
        d = `pid ${process.pid} listen_pid ${process.env.LISTEN_PID} ` +
          `fds ${process.env.LISTEN_FDS} ` +
          `names ${process.env.LISTEN_FDNAMES}\n`;
      }
      first = false;
      if (process.send) {
        for (const line of d.toString().split('\n')) {
          if (line.startsWith('broadcast '))
            process.send(JSON.parse(line.slice(10)));
        }
      }
      c.write(d);
    });
  });
  server.on('error', (e) => {
    console.error(`<3>inherit_echo.js: fd ${3 + i}: ${e.message}`);
    process.exit(1);
  });
  server.listen({ fd: 3 + i });
  servers.push(server);
}
console.error(`inherit_echo.js: pid ${process.pid} serving ${n} sockets ` +
  `(${process.env.LISTEN_FDNAMES})`);
if (process.send) {
  process.on('message', (m) => {
    console.error(`inherit_echo.js: pid ${process.pid} message from ` +
      `${m.from}: ${JSON.stringify(m.message)}`);
  });
}
process.on('SIGTERM', () => {
  console.error(`<5>inherit_echo.js: SIGTERM, closing ${n} listeners, ` +
    `${open} connections open`);
  for (const s of servers)
    s.close();
  // The channel (a 'message' listener keeps it open) must not hold us.
  if (process.connected)
    process.disconnect();
});
