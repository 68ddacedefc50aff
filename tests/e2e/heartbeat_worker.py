#!/usr/bin/env python3
"""A program on the master's channel (docs/protocol.md) that says in its
`listen` that it answers `ping` (HB_SAYS=1), that it also beats by itself
when sent `beat` (HB_SAYS=2, as libnetcluster says), or neither, as a
worker built against a libnetcluster from before the heartbeat. It
writes the type of each message it gets to HB_LOG (and "beat EVERY"),
answers `ping` (if it said so) and `count`, sends a `pong` every EVERY
ms once sent `beat` (HB_SAYS=2), ends at `stop`, and exits 1 at any
other type, as those workers did at one they did not know."""

import json
import os
import socket
import sys
import time

from fakechannel import Channel

level = int(os.environ["HB_SAYS"])
says = level >= 1
ch = Channel(timeout=60)
listen = {"type": "listen", "address": "127.0.0.1:0", "backlog": 16}
if says:
    listen["heartbeat"] = level
ch.send(listen)
data, fds = ch.recv()
res = json.loads(data)
if res.get("type") != "listen.result" or res.get("error") != 0:
    sys.exit("heartbeat_worker: listen refused: %r" % res)
ch.send({"type": "listening", "service": "", "address": res["address"],
         "port": res["port"], "listener": res["listener"]})
every = None                    # s between two pongs of our own, once told
next_beat = None
with open(os.environ["HB_LOG"], "a", buffering=1) as log:
    while True:
        if next_beat is not None:
            ch.sock.settimeout(max(next_beat - time.monotonic(), 0.001))
        try:
            data, fds = ch.recv()
        except socket.timeout:
            if next_beat is None:
                raise
            ch.send({"type": "pong", "accepted": 0})
            next_beat += every
            continue
        for fd in fds:
            os.close(fd)
        if not data:
            sys.exit(0)
        msg = json.loads(data)
        kind = msg.get("type")
        log.write("%s\n" % kind)
        if kind == "ping" and says:
            ch.send({"type": "pong", "ack": msg.get("seq", 0),
                     "accepted": 0})
        elif kind == "beat" and level >= 2:
            log.write("beat %d\n" % msg["every"])
            every = msg["every"] / 1000.0
            ch.send({"type": "pong", "accepted": 0})
            next_beat = time.monotonic() + every
        elif kind == "count":
            ch.send({"type": "count.reply", "ack": msg.get("seq", 0),
                     "count": 0, "services": {}, "accepted": 0})
        elif kind == "stop":
            sys.exit(0)
        else:
            sys.exit(1)
