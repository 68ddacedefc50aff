#!/usr/bin/env python3
"""A hostile worker: each time the master starts it, it breaks the
protocol a new way; after the last, it becomes the real worker."""

import array
import os
import socket
import struct
import sys

counter = os.environ["FAKE_COUNTER"]
try:
    n = int(open(counter).read())
except (OSError, ValueError):
    n = 0
with open(counter, "w") as f:
    f.write(str(n + 1))

ch = socket.socket(fileno=3)
ch.setblocking(True)


def send(data, fds=()):
    anc = []
    if fds:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                array.array("i", fds).tobytes())]
    ch.sendmsg([data], anc)


devnull = os.open("/dev/null", os.O_RDONLY)
if n == 0:
    send(b"this is not json")
elif n == 1:
    send(b"{" + b" " * 70000 + b"}")
elif n == 2:
    send(b'{"type": "hello", "seq": 1, "fds": 2}', [devnull])
elif n == 3:
    send(b'{"type": "hello", "seq": 1}')
    ch.recv(65536)          # the init
    send(b'{"type": "listen", "seq": 2, "address": "127.0.0.1:1"}')
    ch.recv(65536)          # refused: it is not in the config
    sys.exit(3)
elif n == 4:
    send(b'{"type": "format-disk", "seq": 1}')
elif n == 5:
    send(b'{"type": "hello", "seq": 1, "fds": 20}', [devnull] * 20)
elif n == 6:
    # A conn frame, which only the master sends.
    send(struct.pack("<BBHIQI", 1, 1, 1, 0, 1, 0), [devnull])
elif n == 7:
    send(b'{"type": "hello", "seq": 1}')
    ch.recv(65536)          # the init
    # An ack frame before it is online: the master sent it nothing.
    send(struct.pack("<BBHIQQ", 2, 1, 1, 0, 99, 1))
elif n == 8:
    send(struct.pack("<BBHIQQ", 2, 7, 1, 0, 99, 1))
else:
    os.execv(os.environ["FAKE_REAL_WORKER"], ["netcluster-worker"])
# Wait for the master to kill us; bounded.
ch.settimeout(10)
try:
    while ch.recv(65536):
        pass
except OSError:
    pass
