"""The gRPC server Envoy talks to, plus a small HTTP health endpoint.

grpcio serves raw bytes; `wire` reads each ProcessingRequest and the exchange answers with
ProcessingResponse bytes. A generic handler avoids generated servicer code.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import hmac
import logging
import signal
import urllib.error
import urllib.request
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable

import grpc
import orjson

from extproc.errors import GatewayError
from extproc.providers import credentials
from extproc.proxy import replies, sessions
from extproc.proxy.attempt import exchange_for
from extproc.proxy.budget import ByteBudget
from extproc.proxy.exchange import Exchange, Runtime
from extproc.proxy.wire import Phase, decode_request

log = logging.getLogger("extproc")

SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
GRPC_OVERHEAD = 1024 * 1024
"""Room for the protobuf framing around a body at Envoy's buffer limit."""
RELEASE_AFTER_BYTES = 1024 * 1024
"""After a body this large, the heap's free pages go back to the system once all are done."""
BODIES_AT_ONCE = 4
"""Bodies of `listener.max_body_bytes` the sidecar takes in at once (`budget.ByteBudget`)."""


SECRET_METADATA = "x-extproc-secret"
"""The gRPC metadata that carries the sidecar's secret (Envoy's grpc_service initial_metadata)."""
TEXT = b"text/plain"
TOO_LONG = (b"414 URI Too Long", TEXT, b"request line too long\n")
"""The health port's answer to a request line over 64 KiB."""
NOT_FOUND = (b"404 Not Found", TEXT, b"not found\n")
MAX_HEADERS = 32
"""Header lines a post to the health port may have: Envoy's report has a handful."""


class ExtProcServer:
    """Serves ext_proc streams and reports health; `runtime` may be swapped at any time."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        ready: Callable[[], bool] = lambda: True,
        envoy_admin: str | None = None,
    ):
        self.runtime = runtime
        self.ready = ready
        self.envoy_admin = envoy_admin
        """Envoy's admin address (host:port) when `extproc up` runs Envoy beside this sidecar:
        `/ready` then answers for Envoy too, so that a health check sees a listener that is
        down or hung, not only the sidecar."""
        self._grpc: grpc.aio.Server | None = None
        self._health: asyncio.Server | None = None
        self.bodies = ByteBudget(BODIES_AT_ONCE * runtime.config.listener.max_body_bytes)

    async def process(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        secret = self.runtime.config.sidecar_secret
        if secret and not presents(context.invocation_metadata() or (), secret):
            log.warning("refused an ext_proc stream from %s: no or wrong secret", context.peer())
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                f"the ext_proc stream lacks the sidecar's secret ({SECRET_METADATA})",
            )
        exchange = Exchange(self.runtime)
        open_streams = self.runtime.metrics.open_streams
        open_streams.inc()
        messages: AsyncGenerator[bytes, None] = aiter(requests)  # gRPC reads with one
        held = 0
        held_any = False
        try:
            while not exchange.finished:
                # After a Messages request's headers comes its body: read it within budget.
                if exchange.body_due:
                    held = await self.bodies.take(self._body_size(exchange.headers))
                    held_any = held >= RELEASE_AFTER_BYTES
                try:
                    raw = await anext(messages)
                except StopAsyncIteration:
                    return
                phase = decode_request(raw)
                if not exchange.headers:
                    exchange = exchange_for(self.runtime, phase, exchange)
                reply = await self._reply(exchange, phase)
                del raw
                self.bodies.give(held)
                held = 0
                yield reply
            # Returning ends the RPC with an OK status, which ends Envoy's side too: the
            # request goes on without the sidecar (a sidecar crash can no longer cut it).
            # Envoy sends nothing more, so gRPC's reader is closed here: left suspended, it
            # kept the call and its buffers alive until a full garbage collection.
            await messages.aclose()
        finally:
            self.bodies.give(held)
            open_streams.dec()
            if held_any and self.bodies.free == self.bodies.total:
                # The last big body is gone; trim once gRPC has let go of its buffers too.
                asyncio.get_running_loop().call_later(1.0, self._release_if_idle)

    def _release_if_idle(self) -> None:
        if self.bodies.free == self.bodies.total:
            release_freed_memory()

    def _body_size(self, headers: dict[str, str]) -> int:
        """The body's size as the client declared it; unknown (chunked): the largest allowed."""
        declared = headers.get("content-length", "")
        return int(declared) if declared.isdigit() else self.runtime.config.listener.max_body_bytes

    async def _reply(self, exchange: Exchange, message: Phase) -> bytes:
        try:
            return await exchange.handle(message)
        except GatewayError as error:
            log.warning("%s %s: %s", exchange.path or "-", error.error_type, error.message)
            exchange.finished = True
            decided = exchange.decision.metadata() if exchange.decision else None
            return replies.immediate(error, exchange.namespace, decided)
        except Exception:
            log.exception("error while processing %s", exchange.path or "a request")
            exchange.finished = True
            return replies.immediate(
                GatewayError("api_error", "The gateway failed to process this request."),
                exchange.namespace,
            )

    async def start(
        self,
        address: str,
        port: int,
        health_port: int,
        max_body: int,
        reuse_port: bool = False,
        health_address: str | None = None,
    ) -> None:
        """Listen; `reuse_port` lets several worker processes share the ports (the kernel
        spreads connections across them); without it a taken port is an error."""
        limit = max_body + GRPC_OVERHEAD
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", int(reuse_port)),
            ]
        )
        handler = grpc.stream_stream_rpc_method_handler(self.process)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Process": handler}),)
        )
        try:
            server.add_insecure_port(f"{address}:{port}")
        except RuntimeError:  # grpcio says only "Failed to bind to address ..."
            raise OSError(
                f"cannot listen on {address}:{port} for ext_proc (port taken, or not an address "
                "of this machine? sidecar.listen_address is what serve binds)"
            ) from None
        await server.start()
        self._grpc = server
        self._health = await asyncio.start_server(
            self._serve_health, health_address or address, health_port, reuse_port=reuse_port
        )
        log.info(
            "ext_proc listening on %s:%d, health on %s:%d",
            address,
            port,
            health_address or address,
            health_port,
        )

    async def _serve_health(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """`/healthz` (alive), `/ready` (router loaded; under `extproc up`, Envoy serving too),
        `/ready/sidecar`, `/metrics`, `/config` (loaded digest), `/credentials` (for
        `extproc claude`), `/sessions/<id>` (a session's latest decision, for
        `extproc statusline`); `POST /sessions/<id>/answered` (Envoy's count of an answer)."""
        try:
            try:
                request_line = await asyncio.wait_for(reader.readline(), 5)
            except ValueError:  # no line end within the stream reader's limit (64 KiB)
                status, content_type, body = TOO_LONG
            else:
                path = request_line.split(b" ")[1] if request_line.count(b" ") >= 2 else b"/"
                if request_line.startswith(b"POST "):
                    status, content_type, body = await asyncio.wait_for(
                        self._answer_report(path, reader), 5
                    )
                elif path in (b"/ready", b"/ready/sidecar"):
                    status, content_type, body = await self._ready_answer(path)
                else:
                    status, content_type, body = self._health_answer(path)
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\ncontent-type: "
                + content_type
                + b"\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer_report(
        self, path: bytes, reader: asyncio.StreamReader
    ) -> tuple[bytes, bytes, bytes]:
        """`POST /sessions/<id>/answered`: Envoy's count and cost of an answer the sidecar did
        not read (control/usage.lua), added to the session's record. With a sidecar secret set,
        only a post that carries it counts (Envoy's does)."""
        prefix, suffix = sessions.PATH.encode(), sessions.ANSWERED.encode()
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return NOT_FOUND
        try:
            headers = await read_headers(reader)
        except ValueError:
            return b"431 Request Header Fields Too Large", TEXT, b"headers too large\n"
        secret = self.runtime.config.sidecar_secret
        sent = headers.get(SECRET_METADATA.encode(), b"")
        if secret and not presents([(SECRET_METADATA, sent)], secret):
            return b"403 Forbidden", TEXT, b"the sidecar secret is missing or wrong\n"
        length = headers.get(b"content-length", b"")
        if not length.isdigit():
            return b"411 Length Required", TEXT, b"content-length required\n"
        if int(length) > sessions.MAX_REPORT_BYTES:
            return b"413 Content Too Large", TEXT, b"report too large\n"
        report = sessions.answer_report(await reader.readexactly(int(length)))
        if report is None:
            return b"400 Bad Request", TEXT, b"not a report of token counts and cost\n"
        session = path[len(prefix) : -len(suffix)].decode("latin-1")
        if not self.runtime.sessions.answered(session, *report):
            return NOT_FOUND
        return b"200 OK", TEXT, b"ok\n"

    def _health_answer(self, path: bytes) -> tuple[bytes, bytes, bytes]:
        if path == b"/config":
            return b"200 OK", TEXT, self.runtime.config.digest.encode() + b"\n"
        if path == b"/metrics":
            return b"200 OK", b"text/plain; version=0.0.4", self.runtime.metrics.exposition()
        if path == credentials.PATH.encode():
            return (
                b"200 OK",
                b"application/json",
                orjson.dumps(credentials.summary(self.runtime.config)),
            )
        if path == b"/healthz":
            return b"200 OK", TEXT, b"ok\n"
        if path.startswith(sessions.PATH.encode()):
            record = self.runtime.sessions.get(path[len(sessions.PATH) :].decode("latin-1"))
            if record is not None:
                return b"200 OK", b"application/json", orjson.dumps(record.as_json())
        return NOT_FOUND

    async def _ready_answer(self, path: bytes) -> tuple[bytes, bytes, bytes]:
        """`/ready/sidecar`: the router model is loaded (or known missing) and warmed up.
        `/ready`: that, and Envoy serving when `extproc up` runs it (`envoy_admin`)."""
        if not self.ready():
            return b"503 Service Unavailable", TEXT, b"not ready\n"
        if path == b"/ready" and self.envoy_admin is not None:
            state = await asyncio.to_thread(envoy_state, self.envoy_admin)
            if state != "LIVE":
                return b"503 Service Unavailable", TEXT, f"not ready: envoy {state}\n".encode()
        return b"200 OK", TEXT, b"ok\n"

    async def stop(self, grace: float) -> None:
        """Stop accepting streams and let open ones finish, for up to `grace` seconds."""
        if self._health:
            self._health.close()
        if self._grpc:
            if grace > 0:
                log.info("draining open streams for up to %.0fs", grace)
            else:
                log.info("stopping now; open streams are cut")
            await self._grpc.stop(grace)


async def read_headers(reader: asyncio.StreamReader) -> dict[bytes, bytes]:
    """A request's header lines, by lower-case name, up to the blank line; ValueError past
    MAX_HEADERS lines or a line over the reader's limit."""
    headers: dict[bytes, bytes] = {}
    for _ in range(MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    raise ValueError("too many header lines")


def presents(metadata: Iterable[tuple[str, str | bytes]], secret: str) -> bool:
    """Whether a stream's metadata carries `secret`, compared in constant time."""
    wanted = secret.encode()
    return any(
        key == SECRET_METADATA
        and hmac.compare_digest(value.encode() if isinstance(value, str) else value, wanted)
        for key, value in metadata
    )


def envoy_state(admin: str) -> str:
    """What Envoy's admin `/ready` says (LIVE once it serves), or that it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{admin}/ready", timeout=1) as response:
            return response.read().decode().strip()
    except urllib.error.HTTPError as error:  # 503 while it starts or drains: its state
        return error.read().decode().strip() or f"answered {error.code}"
    except OSError:
        return f"does not answer on {admin}"


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed body-sized blocks for reuse instead of unmapping them.

    Each request allocates a few body-sized buffers (the gRPC message, the body, the reply).
    By default glibc maps and unmaps each multi-megabyte block, and the fresh pages fault in
    on every request: a 4 MB body took 34 ms at p50 instead of 24 ms. Kept blocks are not
    kept for good: `release_freed_memory` hands them back once the last big body is done,
    and the peak is bounded by the body budget (BODIES_AT_ONCE bodies read at once): 16
    concurrent 30 MB bodies peak under +800 MiB and settle under +250 MiB
    (tests/e2e/test_limits.py). Returns False where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 256 << 20))


def release_freed_memory() -> None:
    """Hand the heap's free pages back to the system (`keep_freed_memory` keeps them for the
    next body; after a burst of big bodies, nothing may come for a long time)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def tune_for_serving() -> None:
    """Process settings for a long-running request loop, each measured with datapath_bench.

    Besides `keep_freed_memory`: everything imported so far lives as long as the process, so
    it is frozen out of the cyclic garbage collector, and the collector runs after 50,000
    new objects instead of 700 (a request makes a few hundred, rarely in cycles): about 4%
    less CPU per request.
    """
    keep_freed_memory()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def serve_until_signalled(
    server: ExtProcServer, grace: float, on_reload: Callable[[], None] | None = None
) -> None:
    """Run until SIGTERM, then drain for up to `grace` seconds, or until SIGINT (Ctrl-C), then
    stop at once, as `extproc up` does; SIGHUP calls `on_reload`."""
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[int] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: stop.done() or stop.set_result(s))
    if on_reload is not None:
        loop.add_signal_handler(signal.SIGHUP, on_reload)
    signum = await stop
    await server.stop(grace if signum == signal.SIGTERM else 0)
    log.info("stopped")
