#!/usr/bin/env python3
"""Slow and idle HTTP clients, for the denial-of-service cases.

    slowclients.py PORT N READY OUT

Opens N connections to 127.0.0.1:PORT, PER_SOURCE at a time from each
loopback address 127.0.0.2, 127.0.0.3, ... (Linux routes all of 127/8 to
lo, so each is a client address of its own).  Even ones are idle (send
nothing); odd ones send a request head a byte a second, never finishing.
Once all are connected it writes READY; then it waits for the server to
close each one (at most 120 s) and writes OUT, a JSON summary:
{"connected", "closed", "max_held_s", "slow_closed", "idle_closed"}.
"""
import json
import os
import resource
import selectors
import socket
import sys
import time

PER_SOURCE = 25
HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096


def main():
    port, n, ready, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sel = selectors.DefaultSelector()
    conns = []
    start = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.%d" % (2 + i // PER_SOURCE), 0))
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        c = {"s": s, "slow": i % 2 == 1, "t0": time.monotonic(), "sent": 0,
             "closed": None}
        conns.append(c)
        sel.register(s, selectors.EVENT_READ, c)
    with open(ready + ".tmp", "w") as f:
        f.write("%d connected in %.2f s\n" % (len(conns), time.monotonic() - start))
    os.rename(ready + ".tmp", ready)
    deadline = time.monotonic() + 120
    next_byte = time.monotonic()
    while time.monotonic() < deadline and any(c["closed"] is None for c in conns):
        now = time.monotonic()
        if now >= next_byte:
            next_byte = now + 1
            for c in conns:
                if c["slow"] and c["closed"] is None and c["sent"] < len(HEAD):
                    try:
                        c["s"].send(HEAD[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                    except OSError:
                        pass
        for key, _ in sel.select(timeout=max(0.0, next_byte - time.monotonic())):
            c = key.data
            try:
                data = c["s"].recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except BlockingIOError:
                continue
            if not data:
                c["closed"] = time.monotonic() - c["t0"]
                sel.unregister(c["s"])
                c["s"].close()
    closed = [c for c in conns if c["closed"] is not None]
    summary = {
        "connected": len(conns),
        "closed": len(closed),
        "max_held_s": max((c["closed"] for c in closed), default=0),
        "slow_closed": sum(1 for c in closed if c["slow"]),
        "idle_closed": sum(1 for c in closed if not c["slow"]),
    }
    with open(out, "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    main()
