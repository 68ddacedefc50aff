#!/usr/bin/env python3
"""A worker that abuses the master, a new way each time it is started
(HOSTILE_COUNTER counts the starts), then becomes the real worker:
  0  flood: online, then sends unsolicited count replies as fast as the
     channel takes them for HOSTILE_SECONDS, answering real count
     requests meanwhile; the number sent goes to HOSTILE_COUNTER.sent
  1  fds: 1,000 fds in four packets of 250
  2  listeners: asks for 100 listeners it was not given
Bounded: it exits when the master closes the channel, or after 60 s."""

import json
import os
import select
import socket
import sys
import time

from fakechannel import Channel, become_real, starts

counter = os.environ["HOSTILE_COUNTER"]
n = starts(counter)
if n > 2:
    become_real(os.environ["HOSTILE_REAL_WORKER"])
channel = Channel(timeout=60)
ch = channel.sock
send = channel.send


def answer(data):
    msg = json.loads(data)
    if msg.get("type") == "count":
        send({"type": "count.reply", "ack": msg["seq"], "count": 0,
              "accepted": 0, "services": {}})


send({"type": "hello", "pid": os.getpid()})
ch.recv(65536)                      # init
if n == 0:
    send({"type": "ready"})
    sent = 0
    end = time.monotonic() + float(os.environ.get("HOSTILE_SECONDS", "3"))
    junk = {"type": "count.reply", "ack": 999999999, "count": 0,
            "accepted": 0, "services": {"echo": 0}}
    ch.setblocking(False)
    while time.monotonic() < end:
        r, w, _ = select.select([ch], [ch], [], 0.5)
        if r:
            try:
                data = ch.recv(65536)
            except BlockingIOError:
                data = None
            if data == b"":
                sys.exit(0)
            if data:
                answer(data)
        if w:
            try:
                for _ in range(64):
                    send(dict(junk), flags=socket.MSG_DONTWAIT)
                    sent += 1
            except BlockingIOError:
                pass
    with open(counter + ".sent", "w") as f:
        f.write(str(sent))
    sys.exit(0)                     # the master starts the next abuse
elif n == 1:
    null = os.open("/dev/null", os.O_RDONLY)
    fds = [os.dup(null) for _ in range(250)]
    for _ in range(4):
        send({"type": "count.reply", "ack": 1, "count": 0,
              "services": {}}, fds)
    for fd in fds + [null]:
        os.close(fd)
elif n == 2:
    for port in range(100):
        send({"type": "listen", "address": "127.0.0.1:%d" % (40000 + port),
              "service": "echo", "index": 0})
    for _ in range(100):            # every one is answered, and refused
        if b'"error": 0' in ch.recv(65536).replace(b'":0', b'": 0'):
            sys.exit(3)
    sys.exit(0)
# Serve count requests until the master closes the channel; bounded.
try:
    while True:
        data = ch.recv(65536)
        if not data:
            break
        answer(data)
except OSError:
    pass
