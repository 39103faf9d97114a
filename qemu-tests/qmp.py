#!/usr/bin/env python3
"""A tiny QMP client for the harness.

  qmp.py SOCK COMMAND [ARGS-JSON]   run one command, print its "return"
  qmp.py --events SOCK              print "ready", then every event (JSON)
"""
import json
import socket
import sys


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    f = s.makefile("rw")
    json.loads(f.readline())  # the greeting
    send(f, {"execute": "qmp_capabilities"})
    reply(f, None)
    return s, f


def send(f, msg):
    f.write(json.dumps(msg) + "\n")
    f.flush()


def reply(f, events):
    while True:
        line = f.readline()
        if not line:
            sys.exit("qmp: connection closed")
        msg = json.loads(line)
        if "event" in msg:
            if events is not None:
                events.append(msg)
            continue
        if "error" in msg:
            sys.exit("qmp: %s" % msg["error"].get("desc", msg["error"]))
        return msg.get("return")


def main():
    if sys.argv[1] == "--events":
        s, f = connect(sys.argv[2])
        s.settimeout(None)
        print("ready", flush=True)
        for line in f:
            print(line.strip(), flush=True)
        return
    s, f = connect(sys.argv[1])
    msg = {"execute": sys.argv[2]}
    if len(sys.argv) > 3 and sys.argv[3]:
        msg["arguments"] = json.loads(sys.argv[3])
    send(f, msg)
    print(json.dumps(reply(f, [])))


if __name__ == "__main__":
    main()
