#!/usr/bin/env python3
"""Holds N idle connections to a loopback server for bench/conn_memory.sh.

Opens --count connections to 127.0.0.1:--port, bare TCP (nothing sent) or TLS (handshake done,
no request), prints "open N" on stdout, waits for a line on stdin, closes them all, prints
"closed" and exits. Progress and errors go to stderr; the exit status is non-zero when a
connection could not be opened. Bounded: every connect and handshake has a 10 s timeout.
"""
import argparse
import socket
import ssl
import sys
import time


def open_connections(port, count, tls_context):
    held = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_hostname="localhost")
        held.append(sock)
        if (i + 1) % 250 == 0:
            print(f"conn_hold: {i + 1} open", file=sys.stderr)
    return held


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--tls", action="store_true", help="complete a TLS handshake on each")
    parser.add_argument("--ca", help="CA file that signs the server's certificate (with --tls)")
    args = parser.parse_args()
    if not 1 <= args.count <= 10000:
        parser.error("--count must be 1 to 10000")

    context = None
    if args.tls:
        context = ssl.create_default_context(cafile=args.ca)
    started = time.monotonic()
    try:
        held = open_connections(args.port, args.count, context)
    except OSError as e:
        print(f"conn_hold: cannot open a connection: {e}", file=sys.stderr)
        return 1
    print(f"conn_hold: {len(held)} open in {time.monotonic() - started:.1f}s", file=sys.stderr)
    print(f"open {len(held)}", flush=True)
    sys.stdin.readline()
    for sock in held:
        sock.close()
    print("closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
