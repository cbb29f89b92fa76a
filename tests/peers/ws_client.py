#!/usr/bin/env python3
"""A WebSocket test peer for sockhub, built on the `websockets` library (asyncio client).

An implementation of RFC 6455 that shares no code with sockhub, driven by the Rust tests in
crates/sockhub-cli/tests/peers.rs. Every wait is bounded by --timeout (default 15 s).

    ws_client.py listen URL N       print "READY HOST:PORT", then N received messages, one a line
    ws_client.py send URL TEXT...   send each TEXT as a text message, close normally
    ws_client.py close-code URL     print "READY HOST:PORT", wait for the server's close,
                                    print "MSG TEXT" per message before it, then "CODE REASON"

READY carries the client's own address, which is the `peer=` of the server's `connect` log line.

Exit status: 0 done; 2 timed out; 3 the connection ended early (listen) or without a close
frame (close-code); 4 could not connect; 5 the `websockets` package is missing or too old.
"""

import argparse
import asyncio
import sys

try:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
except ImportError as e:  # pragma: no cover - environment problem, reported clearly
    print(f"ws_client.py: cannot import websockets.asyncio.client ({e}); "
          "install it with `python3 -m pip install 'websockets>=13'`", file=sys.stderr)
    sys.exit(5)

EXIT_TIMEOUT = 2
# asyncio.wait_for raises asyncio.TimeoutError, which is the builtin TimeoutError only since 3.11.
TIMEOUTS = (asyncio.TimeoutError, TimeoutError)
EXIT_CLOSED = 3
EXIT_CONNECT = 4


class Failure(Exception):
    """Ends the script with an exit status and a message on stderr."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def out(line):
    # Flushed at once: the Rust test reads stdout line by line while this process runs.
    print(line, flush=True)


def show(message):
    if isinstance(message, bytes):
        return f"<binary {message.hex()}>"
    return message


async def open_ws(url, timeout):
    try:
        # proxy=None: loopback only, whatever *_proxy variables the environment has.
        return await connect(url, open_timeout=timeout, close_timeout=timeout, proxy=None)
    except TIMEOUTS:
        raise Failure(EXIT_TIMEOUT, f"timed out connecting to {url}")
    except Exception as e:  # refused, bad handshake, …
        raise Failure(EXIT_CONNECT, f"cannot connect to {url}: {e!r}")


def ready(ws):
    host, port = ws.local_address[:2]
    out(f"READY {host}:{port}")


async def listen(args):
    ws = await open_ws(args.url, args.timeout)
    async with ws:
        ready(ws)
        for i in range(args.count):
            try:
                message = await asyncio.wait_for(ws.recv(), args.timeout)
            except TIMEOUTS:
                raise Failure(EXIT_TIMEOUT,
                              f"timed out after {args.timeout}s waiting for message {i + 1} "
                              f"of {args.count}")
            except ConnectionClosed as e:
                raise Failure(EXIT_CLOSED, f"closed after {i} of {args.count} messages: {e}")
            out(show(message))
    return 0


async def send(args):
    ws = await open_ws(args.url, args.timeout)
    # Leaving the block closes with 1000 and waits (close_timeout) for the server's answer,
    # so every message is on the wire and read by the server before this process exits.
    async with ws:
        for text in args.texts:
            await asyncio.wait_for(ws.send(text), args.timeout)
    return 0


async def close_code(args):
    ws = await open_ws(args.url, args.timeout)
    ready(ws)
    try:
        while True:
            message = await asyncio.wait_for(ws.recv(), args.timeout)
            out(f"MSG {show(message)}")
    except TIMEOUTS:
        await ws.close()
        raise Failure(EXIT_TIMEOUT, f"the server did not close within {args.timeout}s")
    except ConnectionClosed as e:
        if e.rcvd is None:
            out("1006 ")
            raise Failure(EXIT_CLOSED, f"connection ended without a close frame: {e}")
        out(f"{e.rcvd.code} {e.rcvd.reason}")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=15.0,
                   help="bound on every single wait, in seconds (default 15)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("listen")
    s.add_argument("url")
    s.add_argument("count", type=int)
    s.set_defaults(run=listen)
    s = sub.add_parser("send")
    s.add_argument("url")
    s.add_argument("texts", nargs="+")
    s.set_defaults(run=send)
    s = sub.add_parser("close-code")
    s.add_argument("url")
    s.set_defaults(run=close_code)
    args = p.parse_args()
    try:
        return asyncio.run(args.run(args))
    except Failure as f:
        print(f"ws_client.py {args.command}: {f}", file=sys.stderr)
        return f.status


if __name__ == "__main__":
    sys.exit(main())
