"""The ASGI application: management endpoints and the proxy entry.

Kept free of a web framework on purpose: the proxy path is a handful of
dictionary look-ups before the pipeline, and management endpoints are a
small table of exact paths.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson

from outpost.errors import (
    BadRequestError,
    MethodNotAllowedError,
    NotFoundError,
    ProxyError,
)
from outpost.policy.callers import Caller
from outpost.policy.canonical import canonicalize_path
from outpost.proxy.pipeline import (
    ClientDisconnectedError,
    Exchange,
    Pipeline,
    Receive,
    Scope,
    Send,
    UpstreamBrokenError,
    send_error,
)
from outpost.proxy.runtime import Runtime
from outpost.server.disconnect import DisconnectWatcher
from outpost.server.documents import is_document_path, load_document
from outpost.server.metrics import observe_request, start_flushing, stop_flushing

log = logging.getLogger("outpost.server")

HEALTH_PATH = "/healthz"
MANAGEMENT_PATHS = frozenset({"/healthz", "/readyz", "/providers"})
# Methods whose response repeats the request, credential headers included.
ECHO_METHODS = frozenset({"TRACE", "TRACK"})
DOCS_SECURITY_POLICY = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
)


class _Usage:
    """The number of requests running on one runtime."""

    __slots__ = ("active", "idle")

    def __init__(self) -> None:
        self.active = 0
        # Set when a retired runtime's last request finishes.
        self.idle: asyncio.Event | None = None

    def release(self) -> None:
        self.active -= 1
        if self.active == 0 and self.idle is not None:
            self.idle.set()


class OutpostApp:
    """The ASGI callable that Outpost's server runs in each worker.

    Any ASGI server can run it, as long as the task that runs a request
    can be cancelled: a gone agent's request is stopped by cancelling it.
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pipeline = Pipeline(runtime)
        self.usage = _Usage()
        self.retired: dict[int, _Usage] = {}
        # Run on the event loop at lifespan startup, e.g. to install handlers.
        self.startup_hooks: list[Callable[[], None]] = []

    def swap_runtime(self, runtime: Runtime) -> Runtime:
        """Serve ``runtime`` from the next request on; return the old one."""
        old = self.runtime
        self.retired[id(old)] = self.usage
        self.runtime = runtime
        self.pipeline = Pipeline(runtime)
        self.usage = _Usage()
        return old

    async def close_when_idle(self, runtime: Runtime) -> None:
        """Close a runtime returned by :meth:`swap_runtime` after its last request."""
        usage = self.retired.pop(id(runtime), None)
        if usage is not None and usage.active > 0:
            usage.idle = asyncio.Event()
            await usage.idle.wait()
        await runtime.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.handle_http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1008})

    async def handle_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one HTTP request and write its access-log line."""
        watcher = DisconnectWatcher(scope, receive, send)
        exchange = Exchange(scope, watcher.receive, watcher.send)
        record = exchange.record
        usage = self.usage
        usage.active += 1
        # A gone agent must stop the upstream exchange, so the watcher cancels
        # the task serving this request; the server runs one task per request.
        task = asyncio.current_task()
        assert task is not None
        watcher.start(task)
        try:
            await self._serve(exchange)
        except asyncio.CancelledError:
            if not watcher.disconnected:
                raise
            task.uncancel()
            record.decision = "error"
            record.error_code = "CLIENT_DISCONNECTED"
        finally:
            watcher.stop()
            usage.release()
            record.emit()
            observe_request(record)

    async def _serve(self, exchange: Exchange) -> None:
        record = exchange.record
        try:
            await self._dispatch(self.pipeline, exchange)
        except ProxyError as error:
            record.decision = "deny" if error.status < 500 else "error"
            record.reason = error.reason
            if record.status:
                raise
            await send_error(exchange.send, error, record)
        except ClientDisconnectedError:
            record.decision = "error"
            record.error_code = "CLIENT_DISCONNECTED"
        except UpstreamBrokenError:
            record.decision = "error"
            record.error_code = "PROXY_UPSTREAM_ERROR"
            raise

    async def _dispatch(self, pipeline: Pipeline, exchange: Exchange) -> None:
        runtime = pipeline.runtime
        record = exchange.record
        selected = _selected_provider(exchange)
        if exchange.raw_path == b"/healthz" and selected is None:
            record.path = HEALTH_PATH
            await _send_json(exchange, 200, {"status": "ok"})
            return
        if exchange.method == "CONNECT":
            raise BadRequestError(
                "CONNECT is not supported; Outpost is not a forward proxy",
                reason="connect_method",
            )
        if exchange.method in ECHO_METHODS:
            raise MethodNotAllowedError(
                f"{exchange.method} is never forwarded, because the upstream "
                "would echo the injected credential back; use another method",
                reason="echo_method",
            )
        if _is_websocket_upgrade(exchange):
            raise WebSocketUnsupportedError(
                "WebSocket forwarding is not supported; use the provider's HTTP API",
                reason="websocket_upgrade",
            )

        exchange.path = canonicalize_path(exchange.raw_path, allow_path_parameters=True)
        record.path = exchange.path
        caller = _identify(runtime, exchange)
        exchange.caller = caller
        record.host_id = caller.id

        if selected is None and (
            exchange.path in MANAGEMENT_PATHS or is_document_path(exchange.path)
        ):
            await _management(runtime, exchange, caller)
            return
        await pipeline.handle(exchange, selected)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for hook in self.startup_hooks:
                    hook()
                start_flushing()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                stop_flushing()
                await self.runtime.close()
                await self.runtime.store.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


class WebSocketUnsupportedError(ProxyError):
    """An upgrade to WebSocket, which Outpost does not forward."""

    status = 501
    code = "PROXY_WEBSOCKET_UNSUPPORTED"


def _selected_provider(exchange: Exchange) -> str | None:
    values = [
        value.strip()
        for name, value in exchange.headers
        if name in ("x-provider", "x-broker")
    ]
    if len(values) < 2:
        return values[0] if values else None
    # Two different selections fail closed, because a proxy in front of
    # Outpost may read the other one.
    if len({value.lower() for value in values}) > 1:
        raise BadRequestError(
            "the X-Provider and X-Broker headers name more than one provider; "
            "send one provider name",
            reason="ambiguous_provider",
        )
    return values[0] if values else None


def _is_websocket_upgrade(exchange: Exchange) -> bool:
    # Upgrade is a list of protocols, each with an optional "/version".
    protocols = [
        token.split("/", 1)[0].strip().lower()
        for name, value in exchange.headers
        if name == "upgrade"
        for token in value.split(",")
    ]
    return "websocket" in protocols


def _identify(runtime: Runtime, exchange: Exchange) -> Caller:
    hosts = runtime.hosts
    forwarded = [
        value.encode("latin-1")
        for name, value in exchange.headers
        if name == "x-forwarded-for"
    ]
    client_ip = hosts.resolve_client_ip(exchange.record.client_ip, forwarded)
    exchange.record.client_ip = str(client_ip)
    keys = [
        value.encode("latin-1")
        for name, value in exchange.headers
        if name == "x-outpost-auth"
    ]
    return hosts.identify(client_ip, keys)


async def _management(runtime: Runtime, exchange: Exchange, caller: Caller) -> None:
    path = exchange.path
    if exchange.method not in ("GET", "HEAD"):
        raise NotFoundError(
            f"{exchange.method} {path} is not a management endpoint; use GET or HEAD",
            reason="not_management_method",
        )
    if path == HEALTH_PATH:
        # Reached only by an encoded form such as /%68ealthz, because the
        # exact path is served before the caller is identified.
        await _send_json(exchange, 200, {"status": "ok"})
    elif path == "/readyz":
        await runtime.health.call(runtime.store.ping())
        await _send_json(exchange, 200, {"status": "ready"})
    elif path == "/providers":
        listed = [
            {
                "name": provider.name,
                "base_url": provider.base.origin + provider.base.path_prefix,
                "mode": provider.mode,
                "available": not provider.missing_env,
            }
            for provider in runtime.providers.values()
            if caller.may_use(provider.name)
        ]
        await _send_json(exchange, 200, {"providers": listed})
    else:
        await _send_document(exchange, path)


async def _send_document(exchange: Exchange, path: str) -> None:
    document = await load_document(path)
    if document is None:
        raise NotFoundError(
            f"{path} is not a management endpoint or document",
            reason="no_management_path",
        )
    content_type, body = document
    record = exchange.record
    record.status = 200
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", record.request_id.encode()),
        (b"x-content-type-options", b"nosniff"),
    ]
    if path == "/docs":
        headers.append((b"content-security-policy", DOCS_SECURITY_POLICY))
    send = exchange.send
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if exchange.method == "HEAD":
        body = b""
    record.bytes_out += len(body)
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(exchange: Exchange, status: int, payload: Any) -> None:
    body = orjson.dumps(payload)
    record = exchange.record
    record.status = status
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", record.request_id.encode()),
    ]
    send = exchange.send
    await send({"type": "http.response.start", "status": status, "headers": headers})
    if exchange.method == "HEAD":
        body = b""
    record.bytes_out += len(body)
    await send({"type": "http.response.body", "body": body, "more_body": False})
