"""A server-sent events upstream whose events are spaced in time.

The first event is written as soon as the request is read and the next ones
follow after a pause, so a proxy that buffers the body shows a late first
event. Keep-alive and chunked encoding, like a real streaming API.

Run: ``python -m bench.sse_upstream PORT``.
"""

from __future__ import annotations

import asyncio
import sys

EVENT = b'data: {"delta": {"content": "token"}}\n\n'
LATER_EVENTS = 3
PAUSE_SECONDS = 0.02
HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"content-type: text/event-stream\r\n"
    b"cache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            writer.write(HEAD + _chunk(EVENT))
            await writer.drain()
            for _ in range(LATER_EVENTS):
                await asyncio.sleep(PAUSE_SECONDS)
                writer.write(_chunk(EVENT))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    """Serve on 127.0.0.1:``port`` until killed."""
    server = await asyncio.start_server(_serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
