// bench/messages' Node side: what bench/cluster-msg does under netclusterd,
// with Node's cluster module. Workers send to the primary with
// process.send, the primary relays each message to every other worker
// (as netclusterd's master does), receivers count and check the order.
//
//     node node-msg-cluster.js WORKERS [RETRY_MS]
//
// The primary prints "ready ID:PID ID:PID ..." once every worker is
// online, then takes orders on stdin, one a line:
//     run R SENDER N SIZE   worker SENDER sends N messages of SIZE bytes
//                           of JSON, {"r":R,"s":SEQ,"p":"xxx..."}
//     report R              every receiver of round R says what it has
// and prints what the workers say, as cluster-msg does:
//     worker ID: round R: received N of N in T s, missing M, reordered O
//     worker ID: round R: sent N in T s, K retries
// The sender sends while process.send() returns true (its channel's
// backlog is under Node's threshold) and at most 512 per turn; refused,
// it tries again after RETRY_MS (default 1) from a timer, as cluster-msg.
'use strict';
const cluster = require('cluster');

const BATCH = 512;

if (cluster.isPrimary) {
  const n = parseInt(process.argv[2] || '2', 10);
  let online = 0;
  for (let i = 0; i < n; i++) {
    const w = cluster.fork({ RETRY_MS: process.argv[3] || '1' });
    w.on('online', () => {
      if (++online === n) {
        const ids = Object.values(cluster.workers).map(
          (x) => x.id + ':' + x.process.pid);
        process.stdout.write('ready ' + ids.join(' ') + '\n');
      }
    });
    w.on('message', (m) => {
      if (m && m.line !== undefined) {
        process.stdout.write('worker ' + w.id + ': ' + m.line + '\n');
        return;
      }
      // A broadcast: to every other worker.
      for (const o of Object.values(cluster.workers)) {
        if (o !== w) o.send(m.message);
      }
    });
  }
  let buf = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const f = buf.slice(0, i).trim().split(/\s+/);
      buf = buf.slice(i + 1);
      let order = null;
      if (f[0] === 'run') {
        order = { cmd: 'run', round: +f[1], sender: +f[2], n: +f[3],
          size: +f[4] };
      } else if (f[0] === 'report') {
        order = { cmd: 'report', round: +f[1] };
      }
      if (order) {
        for (const w of Object.values(cluster.workers)) w.send(order);
      }
    }
  });
  process.stdin.on('end', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill();
    process.exit(0);
  });
} else {
  const retryMs = parseInt(process.env.RETRY_MS, 10);
  const id = cluster.worker.id;
  const s = { round: -1, n: 0, size: 0, sent: 0, retries: 0 };
  const r = { round: -1, n: 0, got: 0, next: 0, missing: 0, reordered: 0,
    done: false, tlast: 0 };
  let t0 = 0;
  const now = () => Number(process.hrtime.bigint()) / 1e9;
  const say = (line) => process.send({ line });
  let pad = '';

  const message = (seq) => {
    const head = '{"r":' + s.round + ',"s":' + seq + ',"p":"';
    const len = Math.max(0, s.size - head.length - 2);
    if (pad.length < len) pad = 'x'.repeat(len);
    return { r: s.round, s: seq, p: pad.slice(0, len) };
  };

  const pump = () => {
    let ok = true;
    for (let i = 0; i < BATCH && s.sent < s.n; i++) {
      ok = process.send({ message: message(s.sent) });
      s.sent++;
      if (!ok) break;
    }
    if (s.sent === s.n) {
      say('round ' + s.round + ': sent ' + s.n + ' in ' +
        (now() - t0).toFixed(6) + ' s, ' + s.retries + ' retries');
    } else if (!ok) {
      s.retries++;
      setTimeout(pump, retryMs);
    } else {
      setImmediate(pump);
    }
  };

  const report = () => say('round ' + r.round + ': received ' + r.got +
    ' of ' + r.n + ' in ' + (r.tlast - t0).toFixed(6) + ' s, missing ' +
    r.missing + ', reordered ' + r.reordered);

  process.on('message', (m) => {
    if (m.cmd === 'run') {
      t0 = now();
      if (m.sender === id) {
        Object.assign(s, { round: m.round, n: m.n, size: m.size, sent: 0,
          retries: 0 });
        pump();
      } else {
        Object.assign(r, { round: m.round, n: m.n, got: 0, next: 0,
          missing: 0, reordered: 0, done: false, tlast: t0 });
      }
      return;
    }
    if (m.cmd === 'report') {
      if (r.round >= 0 && m.round === r.round) report();
      return;
    }
    if (m.r !== r.round) return;
    r.got++;
    r.tlast = now();
    if (m.s > r.next) r.missing += m.s - r.next;
    else if (m.s < r.next) r.reordered++;
    if (m.s >= r.next) r.next = m.s + 1;
    if (!r.done && (r.got === r.n || r.next === r.n)) {
      r.done = true;
      report();
    }
  });
  // Nothing else keeps a worker up: the channel does.
}
