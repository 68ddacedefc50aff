#!/usr/bin/env python3
"""A worker slow to start: it says `hello` only once the master has told
it to `stop` (as netcluster-worker does when a SIGTERM reaches the master
in the few milliseconds between a worker's start and its hello), then
asks for a listener as a starting worker would, and exits: 0 if the
master's first word was `stop`, else 1."""

import json
import os
import sys

from fakechannel import Channel

ch = Channel(timeout=60)
data, _ = ch.recv()
first = json.loads(data).get("type") if data else None
ch.send({"type": "hello", "pid": os.getpid()})
ch.send({"type": "listen", "address": "127.0.0.1:0", "backlog": 16,
         "service": os.environ.get("NETCLUSTER_SERVICE", ""), "index": 0})
sys.exit(0 if first == "stop" else 1)
