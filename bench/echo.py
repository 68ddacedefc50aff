#!/usr/bin/env python3
"""Echo benchmark: new connections per second (connect, read "hello",
send 16 bytes, read them back, close) against netclusterd and against
Node.js cluster, both with the same number of workers and round-robin
(Node's default), measured in the same run with the same load.

    bench/echo.py [--seconds 5] [--workers 2] [--clients 4]

Run from a build tree (netclusterd and netclusterctl beside it). The load
is multi-process Python; what it measures is a ratio, not a peak."""

import argparse
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.environ.get("top_builddir", "."))


def client(port, seconds, out):
    made = failed = 0
    payload = b"0123456789abcdef"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(payload)
            got = b""
            while len(got) < 7 + len(payload):
                d = c.recv(64)
                if not d:
                    break
                got += d
            c.close()
            if got == b"hello\r\n" + payload:
                made += 1
            else:
                failed += 1
        except OSError:
            failed += 1
    out.put((made, failed))


def load(port, seconds, clients):
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=client, args=(port, seconds, q))
          for _ in range(clients)]
    start = time.monotonic()
    for p in ps:
        p.start()
    res = [q.get() for _ in ps]
    for p in ps:
        p.join()
    took = time.monotonic() - start
    made = sum(r[0] for r in res)
    return made / took, sum(r[1] for r in res)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run_netclusterd(args):
    t = tempfile.mkdtemp(prefix="nc-bench.")
    conf = os.path.join(t, "c.json")
    with open(conf, "w") as f:
        json.dump({"workers": args.workers, "log_level": "warning",
                   "control_socket": os.path.join(t, "c.sock"),
                   "services": [{"name": "echo", "listen": ["127.0.0.1:0"],
                                 "mode": args.mode}]}, f)
    d = subprocess.Popen([os.path.join(TOP, "netclusterd"), "-c", conf])
    for _ in range(100):
        p = subprocess.run([os.path.join(TOP, "netclusterctl"), "-s",
                            os.path.join(t, "c.sock"), "--json", "status"],
                           capture_output=True)
        if p.returncode == 0 and json.loads(p.stdout)["alive"] == \
                args.workers:
            break
        time.sleep(0.1)
    port = json.loads(p.stdout)["services"][0]["listeners"][0]["port"]
    try:
        return load(port, args.seconds, args.clients)
    finally:
        d.terminate()
        d.wait()


def run_node(args):
    port = free_port()
    n = subprocess.Popen(["node", os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "node-echo-cluster.js"), str(port),
        str(args.workers)], stdout=subprocess.PIPE, text=True)
    n.stdout.readline()     # "ready"
    try:
        return load(port, args.seconds, args.clients)
    finally:
        n.terminate()
        n.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--mode", default="round-robin")
    args = ap.parse_args()
    nc, nc_failed = run_netclusterd(args)
    node, node_failed = run_node(args)
    print("echo, %d workers, %d client processes, %.0f s each:" % (
        args.workers, args.clients, args.seconds))
    print("  netclusterd (%s): %8.0f connections/s, %d failed" % (
        args.mode, nc, nc_failed))
    print("  node cluster (rr):   %8.0f connections/s, %d failed" % (
        node, node_failed))
    print("  ratio netclusterd / node: %.2f" % (nc / node))


if __name__ == "__main__":
    sys.exit(main())
