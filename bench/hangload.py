#!/usr/bin/env python3
"""The load of scenario l (hung workers): -c threads, each making one
request per connection, one after the other, each bounded by -t seconds
from its connect to its answer.

    hangload.py [-c 64] [-t 3] -d SECONDS -p echo|http HOST:PORT

echo: connect, read the greeting "hello\\r\\n", send 4 bytes, read them
back, close (the request of ncload -m conn). http: connect, send
"GET / HTTP/1.0", read the answer to its end (the server closes), which
must be a 200 with the body "hello\\r\\n". Each connection is bound to a
source address among 127.0.0.2..254 in turn, as ncload -b does, so that
the client's TIME_WAITs do not run out of ports.

It runs until SIGTERM or -d seconds, then starts nothing new and lets
what is in flight finish (each within its bound), and prints one JSON
object on stdout: every request as [start, end, outcome], start and end
on CLOCK_MONOTONIC (Python's time.monotonic(), the same clock in every
process), outcome one of ok, refused, reset, timeout, wrong, other."""

import argparse
import json
import signal
import socket
import sys
import threading
import time

GREETING = b"hello\r\n"
PAYLOAD = b"abcd"
BODY = b"hello\r\n"
IP_BIND_ADDRESS_NO_PORT = 24


def one(addr, proto, bound, src):
    """One request: its outcome."""
    start = time.monotonic()
    deadline = start + bound

    def left():
        t = deadline - time.monotonic()
        if t <= 0:
            raise socket.timeout()
        return t
    s = socket.socket()
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        s.bind((src, 0))
        s.settimeout(left())
        s.connect(addr)
        if proto == "echo":
            got = b""
            while len(got) < len(GREETING):
                s.settimeout(left())
                d = s.recv(64)
                if not d:
                    return "reset"
                got += d
            if got != GREETING:
                return "wrong"
            s.settimeout(left())
            s.sendall(PAYLOAD)
            got = b""
            while len(got) < len(PAYLOAD):
                s.settimeout(left())
                d = s.recv(64)
                if not d:
                    return "reset"
                got += d
            return "ok" if got == PAYLOAD else "wrong"
        s.settimeout(left())
        s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        got = b""
        while True:
            s.settimeout(left())
            d = s.recv(4096)
            if not d:
                break
            got += d
        if not got:
            return "reset"
        head, _, body = got.partition(b"\r\n\r\n")
        return "ok" if head.startswith(b"HTTP/1.") and \
            head[9:12] == b"200" and body == BODY else "wrong"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except (ConnectionResetError, BrokenPipeError):
        return "reset"
    except OSError:
        return "other"
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-c", type=int, default=64, help="threads")
    ap.add_argument("-t", type=float, default=3.0, help="bound, s")
    ap.add_argument("-d", type=float, required=True, help="at most, s")
    ap.add_argument("-p", choices=("echo", "http"), required=True)
    ap.add_argument("target")
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    addr = (host, int(port))
    halt = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: halt.set())
    logs = [[] for _ in range(args.c)]

    def run(i):
        n = i
        out = logs[i]
        while not halt.is_set():
            src = "127.0.0.%d" % (2 + n % 253)
            n += args.c
            t = time.monotonic()
            what = one(addr, args.p, args.t, src)
            out.append((round(t, 6), round(time.monotonic(), 6), what))
    threads = [threading.Thread(target=run, args=(i,), daemon=True)
               for i in range(args.c)]
    for t in threads:
        t.start()
    halt.wait(args.d)
    halt.set()
    for t in threads:
        t.join(args.t + 5)
    json.dump({"proto": args.p, "threads": args.c, "bound": args.t,
               "requests": [r for x in logs for r in x]}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
