#!/usr/bin/env python3
"""Latency percentiles of HTTP/1.1 exchanges on the wire, from a loopback packet capture.

Usage: wire-latency.py CAPTURE.pcap PORT

CAPTURE.pcap is `tcpdump -i lo -w CAPTURE.pcap -s 128 tcp port PORT` (classic pcap, Linux
loopback or cooked link type). On each connection, a request starts with a client segment whose
payload begins with an HTTP method, and its response with the next server segment whose payload
begins with `HTTP/1.1`: keep-alive without pipelining, which is what loadgen and oha send. The
latency is the time between the two segments as the kernel saw them, independent of either
tool's clock. The first request of a connection starts at the connection's SYN instead: its
caller waited for the connect, and both tools time it from there (a closed model opens one
connection per request in flight, all at once, so without this its first requests alone would
make a p99.9 at 12,000 requests differ from the tools' by the connects). Prints the count and
p50/p90/p99/p99.9 in ms (nearest-rank, as HdrHistogram), then the number of connections the
client opened (SYN segments).
"""

import math
import struct
import sys

METHODS = (b"POST ", b"GET ", b"PUT ")
SYN, ACK = 0x02, 0x10


def packets(path):
    with open(path, "rb") as f:
        header = f.read(24)
        magic = struct.unpack("<I", header[:4])[0]
        if magic == 0xA1B2C3D4:
            endian, scale = "<", 1e-6
        elif magic == 0xA1B23C4D:
            endian, scale = "<", 1e-9
        else:
            sys.exit(f"{path}: not a little-endian classic pcap file")
        linktype = struct.unpack(endian + "I", header[20:24])[0]
        while True:
            record = f.read(16)
            if len(record) < 16:
                return
            sec, frac, caplen, _ = struct.unpack(endian + "IIII", record)
            data = f.read(caplen)
            yield sec + frac * scale, linktype, data


def tcp_segment(linktype, data):
    """(src_port, dst_port, flags, payload) of an IPv4 TCP segment, or None."""
    if linktype == 1:  # Ethernet (loopback on Linux)
        if data[12:14] != b"\x08\x00":
            return None
        ip = data[14:]
    elif linktype == 113:  # Linux cooked
        if data[14:16] != b"\x08\x00":
            return None
        ip = data[16:]
    elif linktype == 276:  # Linux cooked v2
        if data[0:2] != b"\x08\x00":
            return None
        ip = data[20:]
    else:
        sys.exit(f"unsupported link type {linktype}")
    if len(ip) < 20 or ip[9] != 6:
        return None
    ihl = (ip[0] & 0x0F) * 4
    tcp = ip[ihl:]
    src, dst = struct.unpack(">HH", tcp[:4])
    offset = (tcp[12] >> 4) * 4
    return src, dst, tcp[13], tcp[offset:]


def main():
    path, port = sys.argv[1], int(sys.argv[2])
    pending = {}
    syn = {}
    latencies = []
    connects = 0
    for ts, linktype, data in packets(path):
        segment = tcp_segment(linktype, data)
        if segment is None:
            continue
        src, dst, flags, payload = segment
        if dst == port and flags & SYN and not flags & ACK:
            connects += 1
            syn[src] = ts
        elif dst == port and payload.startswith(METHODS):
            pending[src] = syn.pop(src, ts)
        elif src == port and payload.startswith(b"HTTP/1.1") and dst in pending:
            latencies.append(ts - pending.pop(dst))
    if not latencies:
        sys.exit("no exchanges found")
    latencies.sort()

    def at(q):
        rank = max(1, math.ceil(q * len(latencies)))
        return latencies[rank - 1] * 1e3

    print(
        f"{len(latencies)} p50 {at(0.5):.3f} p90 {at(0.9):.3f} "
        f"p99 {at(0.99):.3f} p99.9 {at(0.999):.3f} connections {connects}"
    )


if __name__ == "__main__":
    main()
