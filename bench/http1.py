"""A minimal HTTP/1.1 client for the latency benches: one keep-alive connection, JSON bodies, nothing else.

httpx (the benches' usual client) costs about 1.3 ms of its own per request on this machine: against a
bare ASGI app under uvicorn, an httpx request took 1.3 ms where the same request written to a socket by
hand took 0.03-0.09 ms (``python -m bench.http1`` measures both). A one-client latency of two requests
then carries 2.6 ms of the client. This client writes the request and reads the answer with asyncio
streams and does nothing else, so a latency figure taken with it is the service's, nearly all of it.

It sends ``Host``, ``Content-Type`` and ``Content-Length`` and reads answers that carry a
``Content-Length`` (the service's JSON answers do); anything else is an error, not a guess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any
from urllib.parse import urlencode, urlsplit


class HttpError(Exception):
    pass


class Http1:
    """``async with Http1(base_url) as http: status, body = await http.post("/table/create", {...})``."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or url.hostname is None or url.port is None:
            raise ValueError(f"an http://host:port URL, not {base_url!r}")
        self.host, self.port = url.hostname, url.port
        self._host_header = f"{url.hostname}:{url.port}".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Http1:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()

    async def get(self, path: str, params: dict[str, Any] | None = None) -> tuple[int, Any]:
        return await self.request("GET", path + (f"?{urlencode(params)}" if params else ""))

    async def post(
        self, path: str, body: Any = None, params: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        return await self.request("POST", path + (f"?{urlencode(params)}" if params else ""), body)

    async def request(self, method: str, target: str, body: Any = None) -> tuple[int, Any]:
        """The answer's status and its JSON body (None when empty)."""
        if self._reader is None or self._writer is None:
            raise RuntimeError("not connected: use `async with`")
        if self._reader.at_eof():  # the server closed the idle connection (its keep-alive timeout)
            self._writer.close()
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        content = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {target} HTTP/1.1".encode(), b"Host: " + self._host_header]
        if body is not None:
            head.append(b"Content-Type: application/json")
        head.append(b"Content-Length: %d" % len(content))
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + content)
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length: int | None = None
        while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            raise HttpError(f"{method} {target}: an answer without Content-Length (status {status})")
        data = await reader.readexactly(length) if length else b""
        return status, json.loads(data) if data else None


# -- the client's own cost ----------------------------------------------------------------------------


async def _bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"11")]})
    await send({"type": "http.response.body", "body": b'{"ok":true}'})


async def _client_costs(n: int) -> None:
    import httpx
    import uvicorn

    config = uvicorn.Config(_bare_app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with Http1(base) as http, httpx.AsyncClient(base_url=base) as client:
            for label, call in (("bench.http1", lambda: http.get("/")), ("httpx", lambda: client.get("/"))):
                for _ in range(100):
                    await call()
                times = []
                for _ in range(n):
                    start = time.perf_counter()
                    await call()
                    times.append(time.perf_counter() - start)
                p50 = 1000 * statistics.median(times)
                print(f"{label:12} GET of a bare ASGI app (same process): p50 {p50:.3f} ms")
    finally:
        server.should_exit = True
        await serving


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    asyncio.run(_client_costs(parser.parse_args().n))


if __name__ == "__main__":
    main()
