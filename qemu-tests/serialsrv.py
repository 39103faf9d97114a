#!/usr/bin/env python3
"""A stand-in serial port for console tests: listens on unix:PATH or
tcp:PORT (127.0.0.1), one client at a time; or pty:LINK, a pty whose
other end (LINK, a symlink to it) is the serial device to open.

    serialsrv.py ADDR tick     "TICK n" every 0.5 s; echoes input as ECHO:..
    serialsrv.py ADDR flood N FILE
                               once FILE exists: N MiB of numbered lines as
                               fast as the client takes them, "FLOOD-END",
                               then ticks
"""
import os
import select
import socket
import sys
import time
import tty


class Pty:
    """The master of a pty, with the socket calls serve() makes.  The slave
    stays open here too, so its user may close and reopen it."""

    def __init__(self, link):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo of our own output as input
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(os.ttyname(self.slave), link)

    def fileno(self):
        return self.master

    def recv(self, n):
        return os.read(self.master, n)

    def sendall(self, data):
        while data:
            data = data[os.write(self.master, data):]


def listen(addr):
    if addr.startswith("unix:"):
        path = addr[5:]
        if os.path.exists(path):
            os.unlink(path)
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
    else:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(addr.split(":")[1])))
    s.listen(4)
    return s


def serve(c, mode, arg, trigger):
    n = 0
    if mode == "flood":
        while not os.path.exists(trigger):
            time.sleep(0.1)
        line = b"%08d flood flood flood flood flood flood flood flood\r\n"
        total = int(arg) * 1024 * 1024
        sent = 0
        while sent < total:
            chunk = b"".join(line % (sent // 64 + i) for i in range(1024))
            c.sendall(chunk)
            sent += len(chunk)
        c.sendall(b"FLOOD-END\r\n")
    while True:
        r, _, _ = select.select([c], [], [], 0.5)
        if r:
            d = c.recv(4096)
            if not d:
                return
            c.sendall(b"ECHO:" + d + b"\r\n")
        else:
            n += 1
            c.sendall(b"TICK %d\r\n" % n)


def main():
    if sys.argv[1].startswith("pty:"):
        p = Pty(sys.argv[1][4:])
        print("ready", flush=True)
        serve(p, sys.argv[2], *(sys.argv[3:5] + ["", ""])[:2])
        return
    s = listen(sys.argv[1])
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        try:
            serve(c, sys.argv[2], *(sys.argv[3:5] + ["", ""])[:2])
        except OSError:
            pass
        c.close()


main()
