// The spec's echo server under Node's cluster module, for comparison:
// node bench/node-echo-cluster.js PORT WORKERS
// (NC_BENCH_BACKLOG: listen()'s backlog, Node's 511 without it)
'use strict';
const cluster = require('cluster');
const net = require('net');
const port = Number(process.argv[2]);
const workers = Number(process.argv[3] || 2);
const backlog = Number(process.env.NC_BENCH_BACKLOG || 511);

if (cluster.isPrimary) {
  let online = 0;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('listening', () => {
    if (++online === workers) console.log('ready');
  });
} else {
  net.createServer((c) => {
    c.on('error', () => {});
    c.write('hello\r\n');
    c.pipe(c);
  }).listen(port, '127.0.0.1', backlog);
}
