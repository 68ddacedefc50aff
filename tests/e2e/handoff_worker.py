#!/usr/bin/env python3
"""The worker of tests/e2e/handoff.py (NETCLUSTER_WORKER).

The first one the master starts (it claims $HANDOFF_DIR/fake) speaks the
channel itself: it asks for the echo service's listener, goes online, then
reads nothing until the test creates $HANDOFF_DIR/go. Then it takes the
first connection the master handed it and does $HANDOFF_ACT with it:
  ack    answer conn.ack accepted, then greet the client with FAKE!\\r\\n
  write  greet the client with FAKE!\\r\\n without answering
  read   read the client's first byte without answering
and exits at once, leaving whatever else the master sent it unread.
With HANDOFF_FRAMES=1 it says it reads frames: connections come as conn
frames, several at once, and its answer is an ack frame taking the first
one only (the others go back to the master).

The second one is the real worker. Any later one is the real worker too,
once $HANDOFF_DIR/go-real exists."""

import json
import os
import signal
import socket
import struct
import sys
import time

from fakechannel import Channel

d = os.environ["HANDOFF_DIR"]
real = os.environ["HANDOFF_REAL_WORKER"]
signal.alarm(120)       # bounded, whatever happens to the test


def claim(name):
    try:
        os.close(os.open(os.path.join(d, name),
                         os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def wait_for(name):
    while not os.path.exists(os.path.join(d, name)):
        time.sleep(0.01)


if not claim("fake"):
    if not claim("real1"):
        wait_for("go-real")
    os.execv(real, [real] + sys.argv[1:])

channel = Channel()
ch = channel.sock
send = channel.send


def recv():
    data, fds = channel.recv()
    if not data:
        sys.exit(0)
    if data[0] == 1:            # a conn frame: as a dict
        kind, ver, n, zero, fseq = struct.unpack_from("<BBHIQ", data)
        return {"type": "conn frame", "seq": fseq, "n": n}, fds
    return json.loads(data), fds


with open(os.path.join(d, "fake.pid"), "w") as f:
    f.write(str(os.getpid()))
send({"type": "hello", "pid": os.getpid()})
while True:
    init, cfd = recv()
    if init["type"] == "init":
        break
# The configuration the master checked, as text in a memfd; ours is the
# service init names.
text = b""
while True:
    chunk = os.pread(cfd[0], 65536, len(text))
    if not chunk:
        break
    text += chunk
os.close(cfd[0])
svc = [s for s in json.loads(text)["services"]
       if s["name"] == init["service"]][0]
frames = os.environ.get("HANDOFF_FRAMES") == "1"
listen = {"type": "listen", "address": svc["listen"][0], "backlog": 511,
          "service": svc["name"], "index": 0}
if frames:
    listen["frames"] = 1
send(listen)
while True:
    res, held = recv()      # a reuseport slot's socket: held, never used
    if res["type"] == "listen.result":
        break
if res["error"] != 0:
    sys.exit("listen.result: %r" % res)
send({"type": "ready", "pid": os.getpid()})
wait_for("go")
while True:
    msg, fds = recv()
    if msg["type"] in ("conn", "conn frame"):
        break
    for fd in fds:
        os.close(fd)
conn = socket.socket(fileno=fds[0])
conn.setblocking(True)
act = os.environ["HANDOFF_ACT"]
if act == "ack" and msg["type"] == "conn frame":
    ch.sendmsg([struct.pack("<BBHIQQ", 2, 1, msg["n"], 0, msg["seq"], 1)])
elif act == "ack":
    send({"type": "conn.ack", "ack": msg["seq"], "accepted": True})
if act in ("ack", "write"):
    conn.sendall(b"FAKE!\r\n")
elif act == "read":
    conn.recv(1)
os._exit(0)
