#!/usr/bin/env python3
"""Minimal Python `websockets` echo/broadcast server (peer for bench/peers/run).

python3 server.py --port PORT --mode echo|broadcast   (WebSocket on any path of 127.0.0.1)
echo: every message sent back. broadcast: `websockets.broadcast` of every message to every
OTHER connection (it skips connections whose write buffer is full, i.e. drops on full).
"""
import argparse
import asyncio

import websockets
from websockets.asyncio.server import broadcast, serve

CLIENTS = set()


async def echo(ws):
    try:
        async for msg in ws:
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass  # the generator drops connections without a close handshake


async def fanout(ws):
    CLIENTS.add(ws)
    try:
        async for msg in ws:
            broadcast([c for c in CLIENTS if c is not ws], msg)
    except websockets.ConnectionClosed:
        pass
    finally:
        CLIENTS.discard(ws)


async def main(port, mode):
    handler = echo if mode == "echo" else fanout
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=2**24,
                     ping_interval=None, backlog=4096) as server:
        await server.serve_forever()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["echo", "broadcast"], required=True)
    a = p.parse_args()
    try:
        asyncio.run(main(a.port, a.mode))
    except KeyboardInterrupt:
        pass
