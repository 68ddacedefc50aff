#!/usr/bin/env python3
"""A program on the master's channel (docs/protocol.md) that says in its
`listen` that it answers `ping` (HB_SAYS=1), or does not, as a worker
built against a libnetcluster from before the heartbeat. It writes the
type of each message it gets to HB_LOG, answers `ping` (if it said so)
and `count`, ends at `stop`, and exits 1 at any other type, as those
workers did at one they did not know."""

import json
import os
import sys

from fakechannel import Channel

says = os.environ["HB_SAYS"] == "1"
ch = Channel(timeout=60)
listen = {"type": "listen", "address": "127.0.0.1:0", "backlog": 16}
if says:
    listen["heartbeat"] = 1
ch.send(listen)
data, fds = ch.recv()
res = json.loads(data)
if res.get("type") != "listen.result" or res.get("error") != 0:
    sys.exit("heartbeat_worker: listen refused: %r" % res)
ch.send({"type": "listening", "service": "", "address": res["address"],
         "port": res["port"], "listener": res["listener"]})
with open(os.environ["HB_LOG"], "a", buffering=1) as log:
    while True:
        data, fds = ch.recv()
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
        elif kind == "count":
            ch.send({"type": "count.reply", "ack": msg.get("seq", 0),
                     "count": 0, "services": {}, "accepted": 0})
        elif kind == "stop":
            sys.exit(0)
        else:
            sys.exit(1)
