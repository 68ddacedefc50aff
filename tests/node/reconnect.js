'use strict';
// A client socket connects, writes 6 bytes, reads their echo, ends, and
// once `close` is emitted connects again from inside that listener, on
// the same object (test-net-bytes-stats.js and test-net-reconnect.js do
// this); the state it reads at each step, one line each. Node v20.20.2
// prints what tests/check_socket.c asserts (NODE_RECONNECT), and
// tests/node-order.sh checks that the installed node still does.
//   node reconnect.js
const net = require('net');

const lines = [];
process.on('exit', () => console.log(lines.join('\n')));

const server = net.createServer((c) => {
  c.on('data', (d) => c.write(d));
  c.on('end', () => c.end());
});
server.listen(0, '127.0.0.1', () => {
  const port = server.address().port;
  const s = new net.Socket();
  let round = 0;
  const state = (tag) => lines.push(`${tag} connecting=${+s.connecting} ` +
    `destroyed=${+s.destroyed} read=${s.bytesRead} ` +
    `written=${s.bytesWritten} ` +
    `remote=${s.remotePort === port ? 'port' : 'none'} ` +
    `local=${s.localPort ? 'set' : 'none'}`);
  s.setEncoding('utf8');
  for (const ev of ['lookup', 'connect', 'end', 'finish', 'timeout'])
    s.on(ev, () => state(ev));
  s.on('error', (e) => state(`error ${e.code}`));
  s.on('connect', () => s.write('hello!'));
  s.on('data', (d) => {
    state(`data ${d.length}`);
    s.end();
  });
  s.on('close', (hadError) => {
    state(`close hadError=${+hadError}`);
    if (++round < 2) {
      s.connect(port, '127.0.0.1');
      state('connect() again');
    } else {
      server.close();
    }
  });
  state('new');
  s.connect(port, '127.0.0.1');
  state('connect()');
});
