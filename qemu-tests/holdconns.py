#!/usr/bin/env python3
"""Idle TCP clients for the denial-of-service cases.

    holdconns.py PORT N SRC READY OUT [EXPECT]

Connects N sockets to 127.0.0.1:PORT from the loopback address SRC (port
0), reads what the server sends first until EXPECT (bytes, say "SSH-2.0")
if given, writes READY, sends nothing more, and waits (at most 120 s) for
the server to close each.  OUT gets one line per socket: the seconds from
connect to close, or "open" for one still open at the end.
"""
import os
import resource
import selectors
import socket
import sys
import time


def main():
    port, n, src, ready, out = (int(sys.argv[1]), int(sys.argv[2]), sys.argv[3],
                                sys.argv[4], sys.argv[5])
    expect = sys.argv[6].encode() if len(sys.argv) > 6 else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        socks.append([s, time.monotonic(), None, b""])
    sel = selectors.DefaultSelector()
    for c in socks:
        sel.register(c[0], selectors.EVENT_READ, c)
    seen = expect is None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(c[2] is None for c in socks):
        if not seen and all(expect in c[3] or c[2] is not None for c in socks):
            seen = True
        if seen and not os.path.exists(ready):
            with open(ready, "w") as f:
                f.write("%d\n" % n)
        for key, _ in sel.select(timeout=0.2):
            c = key.data
            try:
                data = c[0].recv(4096)
            except OSError:
                data = b""
            if data:
                c[3] += data
                continue
            c[2] = time.monotonic() - c[1]
            sel.unregister(c[0])
            c[0].close()
    with open(out + ".tmp", "w") as f:
        for c in socks:
            f.write("open\n" if c[2] is None else "%.2f\n" % c[2])
    os.rename(out + ".tmp", out)


if __name__ == "__main__":
    main()
