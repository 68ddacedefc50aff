#!/usr/bin/env python3
"""A worker that tries to forge a line of the master's log, the way
FORGE_WHAT says, the first time the master starts it (FORGE_COUNTER
counts the starts); from then on it is the real worker (FORGE_REAL_WORKER).
  type   after hello, a message whose type holds a newline and a
         journald priority: the master logs it in a protocol error
  fatal  after hello and init, a fatal whose message does the same
Bounded: it waits at most 10 s for the master to act."""

import os
import sys

from fakechannel import Channel, become_real, starts

if starts(os.environ["FORGE_COUNTER"]) > 0:
    become_real(os.environ["FORGE_REAL_WORKER"])
ch = Channel(timeout=10)
what = os.environ["FORGE_WHAT"]
send = ch.send

send({"type": "hello", "pid": os.getpid()})
if what == "type":
    send({"type": "x\n<0>forged type"})
elif what == "fatal":
    ch.recv()                       # the init
    send({"type": "fatal", "service": "echo",
          "message": "boom\n<0>forged fatal", "code": -1})
    sys.exit(1)                     # as a worker does after its fatal
# The master kills a worker that broke the protocol; wait for it.
ch.wait_end()
