#!/usr/bin/env python3
"""A DHCP client for one exchange: DISCOVER, OFFER, REQUEST, ACK.

dhcpclient.py IFACE MAC [TIMEOUT_S]: on IFACE (up, no address; run inside
the case's namespace), ask for an address as MAC (the chaddr: what a DHCP
server matches its host lines on).  Prints the leased address and exits 0
on an ACK; exits 1 with the reason on a NAK or no answer in TIMEOUT_S.
"""
import os
import socket
import struct
import sys
import time

MAGIC = b"\x63\x82\x53\x63"


def packet(xid, mac, msgtype, extra=b""):
    chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\0")
    head = struct.pack("!BBBBIHH4s4s4s4s16s", 1, 1, 6, 0, xid, 0, 0x8000,
                       b"\0" * 4, b"\0" * 4, b"\0" * 4, b"\0" * 4, chaddr)
    opts = bytes([53, 1, msgtype]) + extra + bytes([55, 2, 1, 3, 255])
    return head + b"\0" * 192 + MAGIC + opts


def options(data):
    out, i = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, n = data[i], data[i + 1]
        out[code] = data[i + 2:i + 2 + n]
        i += 2 + n
    return out


def answer(sock, xid, want, deadline):
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data, _ = sock.recvfrom(4096)
        except socket.timeout:
            break
        if len(data) < 244 or struct.unpack("!I", data[4:8])[0] != xid:
            continue
        o = options(data)
        if o.get(53) in (bytes([want]), bytes([6])):
            return data, o
    return None, None


def main():
    iface, mac = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 10
    deadline = time.monotonic() + timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.bind(("0.0.0.0", 68))
    xid = struct.unpack("!I", os.urandom(4))[0]
    offer = None
    while offer is None and time.monotonic() < deadline:
        s.sendto(packet(xid, mac, 1), ("255.255.255.255", 67))
        offer, o = answer(s, xid, 2, min(deadline, time.monotonic() + 1))
    if offer is None:
        sys.exit("no DHCPOFFER for %s in %g s" % (mac, timeout))
    ip, server = offer[16:20], o.get(54, b"")
    req = bytes([50, 4]) + ip + (bytes([54, 4]) + server if server else b"")
    s.sendto(packet(xid, mac, 3, req), ("255.255.255.255", 67))
    ack, o = answer(s, xid, 5, deadline)
    if ack is None or o.get(53) != bytes([5]):
        sys.exit("no DHCPACK for %s" % mac)
    print(socket.inet_ntoa(ack[16:20]))


if __name__ == "__main__":
    main()
