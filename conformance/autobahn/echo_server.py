#!/usr/bin/env python3
"""Stand-in WebSocket echo server for validating the Autobahn tooling.

Uses the Python `websockets` library (asyncio implementation): every text or
binary message is sent back unchanged. No permessage-deflate (compression=None),
messages up to 16 MiB. Listens on loopback only and stops by itself after
--lifetime seconds so a forgotten server never outlives a run.

    python3 conformance/autobahn/echo_server.py --port 0 --port-file /tmp/port
"""

import argparse
import asyncio
import logging
import os
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main(args):
    async with serve(
        echo,
        args.host,
        args.port,
        max_size=16 * 1024 * 1024,
        compression=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = "ws://%s:%d/" % (args.host, port)
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % port)
            os.replace(tmp, args.port_file)
        print("echo_server: listening on %s (lifetime %ss)" % (url, args.lifetime), flush=True)
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=args.lifetime)
        except asyncio.TimeoutError:
            print("echo_server: lifetime over, stopping", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0 = pick a free one)")
    p.add_argument("--port-file", help="write the bound port here once listening")
    p.add_argument("--lifetime", type=float, default=1800, help="stop after this many seconds (default 1800)")
    p.add_argument("-v", "--verbose", action="store_true", help="log websockets debug output")
    a = p.parse_args()
    if not a.host.startswith("127.") and a.host not in ("localhost", "::1"):
        sys.exit("echo_server: refusing to bind a non-loopback address: %s" % a.host)
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.WARNING)
    try:
        asyncio.run(main(a))
    except KeyboardInterrupt:
        pass
