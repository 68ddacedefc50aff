#!/usr/bin/env python3
"""A hostile worker: each time the master starts it, it breaks the
protocol a new way; after the last, it becomes the real worker."""

import os
import struct
import sys

from fakechannel import Channel, become_real, starts

n = starts(os.environ["FAKE_COUNTER"])
ch = Channel()
send = ch.send_raw


devnull = os.open("/dev/null", os.O_RDONLY)
if n == 0:
    send(b"this is not json")
elif n == 1:
    send(b"{" + b" " * 70000 + b"}")
elif n == 2:
    send(b'{"type": "hello", "seq": 1, "fds": 2}', [devnull])
elif n == 3:
    send(b'{"type": "hello", "seq": 1}')
    ch.recv()               # the init
    send(b'{"type": "listen", "seq": 2, "address": "127.0.0.1:1"}')
    ch.recv()               # refused: it is not in the config
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
    ch.recv()               # the init
    # An ack frame before it is online: the master sent it nothing.
    send(struct.pack("<BBHIQQ", 2, 1, 1, 0, 99, 1))
elif n == 8:
    send(struct.pack("<BBHIQQ", 2, 7, 1, 0, 99, 1))
else:
    become_real(os.environ["FAKE_REAL_WORKER"])
ch.wait_end()
