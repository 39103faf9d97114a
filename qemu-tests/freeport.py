#!/usr/bin/python3
"""Print a TCP port on 127.0.0.1 that is free now, for a test's daemon.

The port comes from below the kernel's ephemeral range: bind(0) hands out
ports from that range to every other process (a concurrent test's own
listeners, curl's source ports), so a port it gave us could be taken again
before the daemon binds it (case 014 failed so with EADDRINUSE while another
make check ran). Below the range only another freeport.py can pick the same
one: a random one of about 12,000 that binds at this moment.
"""
import random
import socket

with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
    low = int(f.read().split()[0])
while True:
    port = random.randrange(20000, low)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
