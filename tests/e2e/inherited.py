"""What the test programs on inherited sockets share (inherit_echo.py,
supervision_notify.py, recycle_leaky.py, trees_prog.py): the sockets as
sd_listen_fds(3) passes them (LISTEN_PID, LISTEN_FDS, fds from 3), and
an echo loop over them: each connection is greeted with "hello\\r\\n"
and gets its bytes back; on SIGTERM the listeners close, the open
connections finish, and run() returns 0. A program changes what it
needs by overriding the hooks."""

import os
import selectors
import signal
import socket


def listen_fds():
    """The sockets passed to us, as sd_listen_fds(3) finds them."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    return [socket.socket(fileno=3 + i)
            for i in range(int(os.environ.get("LISTEN_FDS", "0")))]


class EchoLoop:
    """The loop: SIGTERM is watched from the start (self.stopping), so a
    program may wait on self.sel before it serves (a warm-up)."""

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.stopping = []
        self.listeners = []
        self.conns = {}         # connection: nothing read from it yet
        self.rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd)
        signal.signal(signal.SIGTERM, lambda *a: self.stopping.append(True))
        self.sel.register(self.rfd, selectors.EVENT_READ, self.wake)

    def wake(self, key):
        os.read(self.rfd, 512)

    def watch(self, fileobj, callback):
        """callback(key) whenever fileobj is readable."""
        self.sel.register(fileobj, selectors.EVENT_READ, callback)

    def serve(self, listeners):
        for s in listeners:
            s.setblocking(False)
            self.watch(s, self.accept)
        self.listeners.extend(listeners)

    # Hooks.
    def on_accept(self, conn):
        """A connection, before its greeting."""

    def on_data(self, conn, data, first):
        """What to send back for data (first: its first bytes)."""
        return data

    def on_stop(self):
        """SIGTERM came: False ignores it."""
        return True

    def timeout(self):
        """How long a select may wait (a program's own timers)."""
        return 1.0

    def accept(self, key):
        try:
            c, _ = key.fileobj.accept()
        except OSError:
            return
        self.on_accept(c)
        try:
            c.sendall(b"hello\r\n")
        except OSError:
            c.close()
            return
        c.setblocking(False)
        self.conns[c] = True
        self.watch(c, self.echo)

    def echo(self, key):
        c = key.fileobj
        try:
            d = c.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            d = b""
        if d:
            d = self.on_data(c, d, self.conns[c])
            self.conns[c] = False
            try:
                c.setblocking(True)
                c.sendall(d)
                c.setblocking(False)
                return
            except OSError:
                pass
        self.sel.unregister(c)
        c.close()
        del self.conns[c]

    def run(self):
        while True:
            if self.stopping and self.listeners:
                if not self.on_stop():
                    self.stopping.clear()
                    continue
                for s in self.listeners:
                    self.sel.unregister(s)
                    s.close()
                self.listeners = []
            if self.stopping and not self.conns:
                return 0
            for key, _ in self.sel.select(self.timeout()):
                key.data(key)
