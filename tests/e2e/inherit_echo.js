#!/usr/bin/env node
// An echo server in Node.js that does not link libnetcluster: it takes
// its listening sockets as systemd passes them (sd_listen_fds(3):
// LISTEN_PID, LISTEN_FDS, fds from 3) with net.Server.listen({fd}), as
// netclusterd's "handler": "program" does. Each connection is greeted
// with "hello\r\n" and gets its bytes back; a connection whose first
// bytes are "pid\n" gets instead one line saying who answered. On
// SIGTERM it closes its listeners; open connections finish, and the
// process exits once nothing is left.
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
process.on('SIGTERM', () => {
  console.error(`<5>inherit_echo.js: SIGTERM, closing ${n} listeners, ` +
    `${open} connections open`);
  for (const s of servers)
    s.close();
});
