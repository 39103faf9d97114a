#!/usr/bin/env python3
"""A browser-console client for tests (python3-websockets, asyncio).

    wsview.py session URL TOKEN OUT CTL CMDS SECS [--watch] [--origin O]
        POST URL/v1/servers/ID/console/ticket with TOKEN, then open
        URL/v1/servers/ID/console/ws (URL names the server:
        http://H:P/v1/servers/ID).  Binary frames received are appended to
        OUT, text frames as lines to CTL; lines read from the fifo CMDS
        are sent: "B <hex>" as a binary frame, "T <json>" as a text frame, "C" closes (1000).
        Ends after SECS, or when the server closes (close code into
        OUT.status).  "ready" goes into CTL once the socket is open.
    wsview.py probe URL TICKET ORIGIN
        One handshake with that ticket and Origin ("-": none): prints the
        HTTP status (101 when upgraded).
    wsview.py ticket URL TOKEN
        Prints a new ticket.
"""
import asyncio
import json
import os
import sys
import urllib.request

import websockets


def ticket(url, token):
    req = urllib.request.Request(url + "/console/ticket", data=b"",
                                 method="POST",
                                 headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 201, r.status
        return json.load(r)["ticket"]


def ws_url(url, watch=False):
    u = url.replace("http://", "ws://", 1) + "/console/ws"
    return u + ("?mode=watch" if watch else "")


def origin_of(url):
    return "/".join(url.split("/")[:3])


async def probe(url, tk, origin):
    try:
        async with websockets.connect(
                ws_url(url), subprotocols=["rescued.console", "ticket." + tk],
                origin=None if origin == "-" else origin, open_timeout=5):
            return 101
    except websockets.exceptions.InvalidStatusCode as e:
        return e.status_code


async def session(url, token, out, ctl, cmds, secs, watch, origin):
    tk = ticket(url, token)
    status = out + ".status"
    async with websockets.connect(
            ws_url(url, watch),
            subprotocols=["rescued.console", "ticket." + tk],
            origin=origin or origin_of(url), max_size=None,
            open_timeout=10) as ws:
        assert ws.subprotocol == "rescued.console", ws.subprotocol
        fo = open(out, "ab", buffering=0)
        fc = open(ctl, "a", buffering=1)
        fc.write("ready\n")
        loop = asyncio.get_running_loop()
        fd = os.open(cmds, os.O_RDWR | os.O_NONBLOCK)
        pending = b""

        def readable():
            nonlocal pending
            try:
                pending += os.read(fd, 65536)
            except BlockingIOError:
                return
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.startswith(b"B "):
                    asyncio.ensure_future(ws.send(bytes.fromhex(
                        line[2:].decode())))
                elif line.startswith(b"T "):
                    asyncio.ensure_future(ws.send(line[2:].decode()))
                elif line == b"C":
                    asyncio.ensure_future(ws.close(1000, "done"))
        loop.add_reader(fd, readable)
        try:
            async def rx():
                async for m in ws:
                    if isinstance(m, bytes):
                        fo.write(m)
                    else:
                        fc.write(m + "\n")
            await asyncio.wait_for(rx(), secs)
        except asyncio.TimeoutError:
            pass
        except websockets.exceptions.ConnectionClosed:
            pass
        loop.remove_reader(fd)
        code = ws.close_code
    open(status, "w").write("%s\n" % code)


def main():
    a = sys.argv[1:]
    if a[0] == "probe":
        print(asyncio.run(probe(a[1], a[2], a[3])))
    elif a[0] == "ticket":
        print(ticket(a[1], a[2]))
    elif a[0] == "session":
        watch = "--watch" in a
        origin = a[a.index("--origin") + 1] if "--origin" in a else None
        asyncio.run(session(a[1], a[2], a[3], a[4], a[5], float(a[6]), watch,
                            origin))


if __name__ == "__main__":
    main()
