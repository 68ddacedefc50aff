"""The two of Node's net tests (tests/node-net-tests.md) that need a
cluster, with tests/node_net_worker.c as netclusterd's program workers:

test-net-listen-exclusive-random-ports.js: two workers each listen with
exclusive on port 0: both listen, on two different ports, each of which
takes a connection.

test-net-server-close-before-ipc-response.js: a worker listens through
the master and closes before the answer comes: no `listening`, and its
loop ends by itself (it exits 0)."""

import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BUILD, SCALE, Daemon, check, run

WORKER = os.path.join(BUILD, "tests", "node_net_worker")


def service(mode_arg, mode="shared"):
    return {"name": "nn", "handler": "program", "sockets": "cluster",
            "mode": mode, "listen": ["127.0.0.1:0"],
            "command": [WORKER, mode_arg]}


def wait_lines(d, pattern, count, timeout=20):
    """The matches of pattern in the log, once there are count of them
    (bounded)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout * SCALE
    while True:
        found = [m for m in map(rx.search, d.lines) if m]
        if len(found) >= count:
            return found
        check(time.monotonic() < deadline, "no %d lines /%s/; log:\n%s" % (
            count, pattern, "\n".join(d.lines[-20:])))
        d.read_lines(0.1)


def test_net_listen_exclusive_random_ports():
    d = Daemon([service("exclusive")], workers=2)
    try:
        found = wait_lines(d, r"\[pid (\d+)\]: exclusive port (\d+)$", 2)
        ports = {int(m.group(1)): int(m.group(2)) for m in found}
        print("  exclusive: ports %s" % ports)
        check(len(ports) == 2, "two workers' ports: %s" % ports)
        check(len(set(ports.values())) == 2 and
              all(p > 0 for p in ports.values()),
              "ports not two and different: %s" % ports)
        for p in ports.values():
            with socket.create_connection(("127.0.0.1", p),
                                          timeout=5 * SCALE):
                pass
    finally:
        d.stop()


def test_net_server_close_before_ipc_response():
    d = Daemon([service("close-before-ipc")], workers=1)
    try:
        found = wait_lines(d, r"\[pid (\d+)\]: listening (\d+), loop ended$",
                           1)
        pid = int(found[0].group(1))
        check(found[0].group(2) == "0", "listening came: %s" %
              found[0].group(0))
        exited = wait_lines(d, r"\[pid %d\] \(slot \d+\) exited with "
                            r"status (\d+)" % pid, 1)
        print("  close before the answer: %s; %s" % (
            found[0].group(0), exited[0].group(0)))
        check(exited[0].group(1) == "0", "exit: %s" % exited[0].group(0))
    finally:
        d.stop()


if __name__ == "__main__":
    run([test_net_listen_exclusive_random_ports,
         test_net_server_close_before_ipc_response])
