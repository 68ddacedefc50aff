#!/usr/bin/env python3
"""A worker that abuses the master, a new way each time it is started
(HOSTILE_COUNTER counts the starts), then becomes the real worker:
  0  flood: online, then sends unsolicited count replies as fast as the
     channel takes them for HOSTILE_SECONDS, answering real count
     requests meanwhile; the number sent goes to HOSTILE_COUNTER.sent
  1  fds: 1,000 fds in four packets of 250
  2  listeners: asks for 100 listeners it was not given
Bounded: it exits when the master closes the channel, or after 60 s.

With HOSTILE_MESSAGES (the path of bench/cluster-msg), it is a worker of
a "sockets": "cluster" service that abuses messages (tests/e2e/
messages.py), saying first on stdout "role ROLE":
  0  payloads: online, then at the operator's {"cmd": "hostile", "step":
     "payloads"} broadcasts two frames whose payload is not JSON (cut
     short; not UTF-8) and then one that is, {"hostile":"ok"}; at
     "length", a broadcast frame whose length is not its packet's
  1  older: cluster-msg as a program built against an older library
     (NETCLUSTER_FRAMES unset: it neither sends nor reads frames)
  4  version: online, then a broadcast frame of version 2
  5  message: online, then a message frame, which only a master sends
  6  size: online, then a broadcast frame of 65001 bytes of payload
  others: cluster-msg ("real")."""

import json
import os
import select
import socket
import struct
import sys
import time

from fakechannel import Channel, become_real, starts


def msg_frame(payload, kind=3, version=1, flags=0, length=None, sender=0):
    """A broadcast (3) or message (4) frame (docs/protocol.md)."""
    if length is None:
        length = len(payload)
    return struct.pack("<BBHIII", kind, version, flags, length, sender,
                       0) + payload


def messages_worker(n):
    real = os.environ["HOSTILE_MESSAGES"]
    roles = {0: "payloads", 1: "older", 4: "version", 5: "message",
             6: "size"}
    role = roles.get(n, "real")
    print("role %s" % role, flush=True)
    argv = [real, "-h", "127.0.0.1", "-p", "0"]
    if role == "older":
        os.environ.pop("NETCLUSTER_FRAMES", None)
    if role in ("real", "older"):
        os.execv(real, argv)
    ch = Channel(timeout=60)
    ch.send({"type": "listen", "address": "127.0.0.1:0", "backlog": 16})
    while True:
        data, fds = ch.recv()
        for fd in fds:
            os.close(fd)
        res = json.loads(data)
        if res.get("type") == "listen.result":
            break
    if res.get("error") != 0:
        sys.exit("hostile_worker: listen refused: %r" % res)
    ch.send({"type": "listening", "service": "", "address": res["address"],
             "port": res["port"], "listener": res["listener"]})
    if role == "version":
        ch.send_raw(msg_frame(b'{"v":2}', version=2))
    elif role == "message":
        ch.send_raw(msg_frame(b'{"m":1}', kind=4, sender=1))
    elif role == "size":
        ch.send_raw(msg_frame(b'"' + b"x" * 64999 + b'"'))
    while True:
        try:
            data, fds = ch.recv()
        except OSError:
            sys.exit(0)
        for fd in fds:
            os.close(fd)
        if not data:
            sys.exit(0)
        if data[:1] != b"{":
            sys.exit("hostile_worker: a frame it did not ask for")
        msg = json.loads(data)
        kind = msg.get("type")
        if kind == "count":
            ch.send({"type": "count.reply", "ack": msg["seq"], "count": 0,
                     "accepted": 0, "services": {}})
        elif kind == "stop":
            sys.exit(0)
        elif kind == "message" and msg.get("from") == 0 and \
                isinstance(msg.get("message"), dict) and \
                msg["message"].get("cmd") == "hostile":
            step = msg["message"].get("step")
            if step == "payloads" and role == "payloads":
                ch.send_raw(msg_frame(b'{"r":'))
                ch.send_raw(msg_frame(b'"\xff\xfe"'))
                ch.send_raw(msg_frame(b'{"hostile":"ok"}'))
            elif step == "length" and role == "payloads":
                ch.send_raw(msg_frame(b'{"r":1}', length=6))


def start_number(counter):
    """This start's number: the first COUNTER.N this process created,
    atomically (the pool's workers start at once)."""
    n = 0
    while True:
        try:
            os.close(os.open("%s.%d" % (counter, n),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return n
        except FileExistsError:
            n += 1


if os.environ.get("HOSTILE_MESSAGES"):
    messages_worker(start_number(os.environ["HOSTILE_COUNTER"]))
    sys.exit(0)

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
