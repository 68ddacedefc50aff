'use strict';
// The order of events on the server side when a server closes while
// connections are open, printed one per line; Node v20.20.2 gives the
// orders tests/check_server.c asserts (NODE_ORDER_*), and
// tests/node-order.sh checks that the installed node still does.
//   node close-order.js end|two|destroy|reset
const net = require('net');

const scenario = process.argv[2];
const events = [];
const log = (e) => events.push(e);
process.on('exit', () => console.log(events.join('\n')));

function watch(sock, name) {
  sock.on('end', () => log(`${name} end`));
  sock.on('finish', () => log(`${name} finish`));
  sock.on('error', (e) => log(`${name} error ${e.code}`));
  sock.on('close', (hadError) => log(`${name} close${hadError ? ' error' : ''}`));
}

const conns = [];
const server = net.createServer((sock) => {
  const name = `conn${conns.length + 1}`;
  watch(sock, name);
  conns.push(sock);
  if (conns.length === want)
    ready();
});
server.on('close', () => log('server close'));

const want = scenario === 'two' ? 2 : 1;
const clients = [];

server.listen(0, '127.0.0.1', () => {
  for (let i = 0; i < want; i++) {
    const c = net.connect(server.address().port, '127.0.0.1');
    c.on('error', () => {});
    c.resume();
    clients.push(c);
  }
});

// The client at the other end of a server-side socket.
const peer = (sock) => clients.find((c) => c.localPort === sock.remotePort);

function ready() {
  server.close((err) => log(`close cb${err ? ' ' + err.code : ''}`));
  switch (scenario) {
  case 'end':		/* (a) the client ends */
    peer(conns[0]).end();
    break;
  case 'two':		/* (b) getConnections, then each client ends */
    server.getConnections((err, n) => {
      log(`getConnections ${n}`);
      peer(conns[0]).end();
      conns[0].once('close', () => peer(conns[1]).end());
    });
    break;
  case 'destroy':	/* (c) the server side destroys its socket */
    conns[0].destroy();
    break;
  case 'reset':		/* (d) the client resets */
    peer(conns[0]).resetAndDestroy();
    break;
  default:
    throw new Error(`unknown scenario ${scenario}`);
  }
}
