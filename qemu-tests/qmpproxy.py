#!/usr/bin/env python3
"""A QMP proxy for the harness: stands where rescued expects QEMU's QMP
socket, relays every line to and from QEMU's own socket, and logs what
passes, so a case sees which commands rescued sent and what QEMU said.

    qmpproxy.py LISTEN UPSTREAM [HOLD]

Logs to stdout, one line each: "ready"; "N open"; "N > CMD" (a command
from the client of connection N); "N < CMD ok" or "N < CMD error: DESC"
(QEMU's reply); "N closed".  With HOLD (a command name) the first HOLD
command is never passed on: "N hold CMD" when it arrives, and "N dropped
CMD" when its client goes away, so a case can kill rescued while the
command is in flight and know that QEMU never saw it.  Later HOLD
commands pass.  HOLD "fake:CMD" instead answers every CMD with an empty
success itself and never passes it on ("N fake CMD"): a BMC that accepts
what it does not do (issue 18: a boot device that is never set).
"""
import json
import os
import selectors
import socket
import sys


def log(msg):
    print(msg, flush=True)


class Conn:
    def __init__(self, n, client, upstream):
        self.n = n
        self.client = client
        self.upstream = upstream
        self.cbuf = b""
        self.ubuf = b""
        self.ids = {}  # command id -> name, to name the replies
        self.held = None


def main():
    listen, upstream_path = sys.argv[1], sys.argv[2]
    hold = sys.argv[3] if len(sys.argv) > 3 else None
    fake = hold[5:] if hold and hold.startswith("fake:") else None
    if fake:
        hold = None
    if os.path.exists(listen):
        os.unlink(listen)
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(listen)
    srv.listen(4)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, None)
    log("ready")
    count = 0

    def close(c):
        for s in (c.client, c.upstream):
            sel.unregister(s)
            s.close()
        if c.held:
            log("%d dropped %s" % (c.n, c.held))
        log("%d closed" % c.n)

    def from_client(c, line):
        nonlocal hold
        try:
            msg = json.loads(line)
            cmd = msg.get("execute", "?")
        except ValueError:
            msg, cmd = {}, "?"
        if "id" in msg:
            c.ids[json.dumps(msg["id"])] = cmd
        log("%d > %s" % (c.n, cmd))
        if fake and cmd == fake:
            c.ids.pop(json.dumps(msg.get("id")), None)
            log("%d fake %s" % (c.n, cmd))
            reply = {"return": {}}
            if "id" in msg:
                reply["id"] = msg["id"]
            c.client.sendall(json.dumps(reply).encode() + b"\n")
            return
        if hold and cmd == hold:
            hold = None
            c.held = cmd
            log("%d hold %s" % (c.n, cmd))
            return
        c.upstream.sendall(line)

    def from_upstream(c, line):
        try:
            msg = json.loads(line)
        except ValueError:
            msg = {}
        if "id" in msg:
            cmd = c.ids.pop(json.dumps(msg["id"]), "?")
            if "error" in msg:
                log("%d < %s error: %s" % (c.n, cmd, msg["error"].get("desc")))
            else:
                log("%d < %s ok" % (c.n, cmd))
        c.client.sendall(line)

    while True:
        for key, _ in sel.select():
            if key.data is None:
                client, _ = srv.accept()
                up = socket.socket(socket.AF_UNIX)
                try:
                    up.connect(upstream_path)
                except OSError as e:
                    log("refused: %s" % e)
                    client.close()
                    continue
                count += 1
                c = Conn(count, client, up)
                sel.register(client, selectors.EVENT_READ, (c, True))
                sel.register(up, selectors.EVENT_READ, (c, False))
                log("%d open" % count)
                continue
            c, is_client = key.data
            if c.client.fileno() < 0:
                continue  # closed earlier in this round
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if not data:
                close(c)
                continue
            if is_client:
                c.cbuf += data
                while b"\n" in c.cbuf:
                    line, c.cbuf = c.cbuf.split(b"\n", 1)
                    from_client(c, line + b"\n")
            else:
                c.ubuf += data
                while b"\n" in c.ubuf:
                    line, c.ubuf = c.ubuf.split(b"\n", 1)
                    from_upstream(c, line + b"\n")


if __name__ == "__main__":
    main()
