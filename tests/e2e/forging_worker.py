#!/usr/bin/env python3
"""A worker that tries to forge a line of the master's log, the way
FORGE_WHAT says, the first time the master starts it (FORGE_COUNTER
counts the starts); from then on it is the real worker (FORGE_REAL_WORKER).
  type   after hello, a message whose type holds a newline and a
         journald priority: the master logs it in a protocol error
  fatal  after hello and init, a fatal whose message does the same
Bounded: it waits at most 10 s for the master to act."""

import json
import os
import socket
import sys

counter = os.environ["FORGE_COUNTER"]
try:
    n = int(open(counter).read())
except (OSError, ValueError):
    n = 0
with open(counter, "w") as f:
    f.write(str(n + 1))
if n > 0:
    os.execv(os.environ["FORGE_REAL_WORKER"], ["netcluster-worker"])

ch = socket.socket(fileno=int(os.environ.get("NETCLUSTER_CHANNEL_FD", "3")))
ch.setblocking(True)
ch.settimeout(10)
what = os.environ["FORGE_WHAT"]


def send(msg):
    ch.send(json.dumps(msg).encode())


send({"type": "hello", "seq": 1, "pid": os.getpid()})
if what == "type":
    send({"type": "x\n<0>forged type", "seq": 2})
elif what == "fatal":
    ch.recv(65536)                  # the init (its memfd, if any, closed)
    send({"type": "fatal", "seq": 2, "service": "echo",
          "message": "boom\n<0>forged fatal", "code": -1})
    sys.exit(1)                     # as a worker does after its fatal
# The master kills a worker that broke the protocol; wait for it.
try:
    while ch.recv(65536):
        pass
except OSError:
    pass
