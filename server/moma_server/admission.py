"""Admission control: every RPC is bounded before a worker thread is committed to it.

Why this exists: the synchronous gRPC server hands a call to a worker thread as soon as its
headers arrive, and that thread then waits, without any time limit, for the client's first
request message (for unary RPCs too), for every further message of a client stream, and for
the client to take every message of a server stream. A peer that opens streams and sends
nothing could hold every worker, with no key needed, and every other RPC would hang.

What the interceptor does, for every method (ours, health checking and reflection):

- **Groups with their own threads.** Uploads (client streams), downloads (server streams),
  unary calls, other streams (health ``Watch``, reflection) and refusals each run on their own
  thread pool, so a group that is full never delays another: idle uploads cannot make a
  listing or a download wait.
- **Total per group**, counted in the server's polling thread (where interceptors run) before
  a worker is committed: over the limit, the call is refused with RESOURCE_EXHAUSTED by a
  handler that never reads the request.
- **Per peer** (IP address), checked first thing on the worker, before any message is read.
  Behind a proxy the operator trusts (``--trusted-proxy``), the peer is the client the proxy
  names in ``x-forwarded-for`` (:mod:`moma_server.client_address`), so a proxy's clients
  are not counted as one.
- **Time.** The first request message must arrive within ``first_message_s``, each later one
  (upload chunks) within ``idle_s`` of the previous, and the client must take each streamed
  response within ``idle_s``; otherwise a watchdog thread cancels the call. Unary handlers
  read their request through the same timed stream (the wire format does not change).
- **Malformed bytes.** A request that does not parse is INVALID_ARGUMENT naming the method,
  not gRPC's INTERNAL "Exception deserializing request".

Bounded this way, the worst a peer can do is hold its share of one group for a bounded time.
The sync server still ties one thread to each admitted call while it waits; an asyncio server
would not need the threads at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc

from moma_server.client_address import IPNetwork, call_client_address, transport_address
from moma_server.services.errors import HubError

log = logging.getLogger("moma_server")

UPLOAD_METHOD = "/moma.hub.v1.ModuleService/Upload"
DOWNLOAD_METHOD = "/moma.hub.v1.ModuleService/Download"


@dataclass(frozen=True)
class GroupLimit:
    """Threads, admitted calls in total, and admitted calls per peer address, of one group."""

    threads: int
    total: int
    per_peer: int


@dataclass(frozen=True)
class Limits:
    """The hub's admission limits (documented in docs/hub.md, section "Limits")."""

    uploads: GroupLimit = GroupLimit(threads=64, total=64, per_peer=32)
    downloads: GroupLimit = GroupLimit(threads=64, total=64, per_peer=32)
    unary: GroupLimit = GroupLimit(threads=48, total=160, per_peer=32)
    other: GroupLimit = GroupLimit(threads=8, total=16, per_peer=4)
    refusal_threads: int = 2
    idle_s: float = 60.0
    """Longest wait for the next message of a stream, in either direction."""
    first_message_s: float = 10.0
    """Longest wait for a call's first request message (a real client sends it at once)."""
    streams_per_connection: int = 100
    """HTTP/2 concurrent streams per connection (grpc core enforces it before any work)."""
    trusted_proxies: tuple[IPNetwork, ...] = ()
    """Proxies whose ``x-forwarded-for`` names the client that per-peer limits count."""

    @property
    def max_concurrent_rpcs(self) -> int:
        """The server-wide backstop: calls past it are refused by grpc core without a thread."""
        groups = (self.uploads, self.downloads, self.unary, self.other)
        return sum(g.total for g in groups) + 64

    @classmethod
    def with_idle(cls, idle_s: float,
                  trusted_proxies: tuple[IPNetwork, ...] = ()) -> Limits:
        return cls(idle_s=idle_s, first_message_s=min(idle_s, cls.first_message_s),
                   trusted_proxies=trusted_proxies)


class Malformed:
    """What a request deserializer returns instead of raising (gRPC would answer INTERNAL)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError and friends: the bytes are not this message
            return Malformed(f"{type(exc).__name__}: {str(exc)[:120]}")

    return parse


class Watchdog:
    """One thread that cancels calls whose peer did not act before a deadline."""

    def __init__(self, tick_s: float = 0.2) -> None:
        self._tick_s = tick_s
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, grpc.ServicerContext, str]] = {}
        self._fired: set[int] = set()
        self._next = 0
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, context: grpc.ServicerContext, what: str) -> int:
        with self._lock:
            self._next += 1
            self._deadlines[self._next] = (time.monotonic() + seconds, context, what)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="moma-hub-watchdog",
                                                daemon=True)
                self._thread.start()
            return self._next

    def disarm(self, token: int) -> bool:
        """Forget ``token``; True if its deadline had passed and the call was cancelled."""
        with self._lock:
            self._deadlines.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _run(self) -> None:
        while True:
            time.sleep(self._tick_s)
            now = time.monotonic()
            with self._lock:
                due = [(t, c, w) for t, (d, c, w) in self._deadlines.items() if d <= now]
                for token, _, _ in due:
                    del self._deadlines[token]
                    self._fired.add(token)
            for _, context, what in due:
                log.info("cancelling a call from %s: %s", _peer_host(context), what)
                context.cancel()


def _peer_host(context: grpc.ServicerContext) -> str:
    """The connection's address, without scheme and port (for log lines)."""
    return transport_address(context.peer())


@dataclass
class _Group:
    name: str
    limit: GroupLimit
    pool: futures.ThreadPoolExecutor
    lock: threading.Lock = field(default_factory=threading.Lock)
    admitted: int = 0
    peers: Counter[str] = field(default_factory=Counter)

    def reserve(self) -> bool:
        with self.lock:
            if self.admitted >= self.limit.total:
                return False
            self.admitted += 1
            return True

    def enter(self, peer: str) -> bool:
        with self.lock:
            if self.peers[peer] >= self.limit.per_peer:
                return False
            self.peers[peer] += 1
            return True

    def leave(self, peer: str | None) -> None:
        with self.lock:
            self.admitted -= 1
            if peer is not None:
                self.peers[peer] -= 1
                if self.peers[peer] <= 0:
                    del self.peers[peer]


class TimedRequests:
    """A request iterator whose every wait for the client is bounded by the watchdog."""

    def __init__(self, inner: Iterator[Any], context: grpc.ServicerContext, watchdog: Watchdog,
                 first_s: float, idle_s: float, method: str) -> None:
        self._inner = inner
        self._context = context
        self._watchdog = watchdog
        self._first_s, self._idle_s = first_s, idle_s
        self._method = method
        self.count = 0

    def __iter__(self) -> TimedRequests:
        return self

    def __next__(self) -> Any:
        wait = self._first_s if self.count == 0 else self._idle_s
        what = (f"no request message within {wait:g} s" if self.count == 0
                else f"no further message within {wait:g} s of the previous one")
        token = self._watchdog.arm(wait, self._context, f"{self._method}: {what}")
        try:
            message = next(self._inner)
        except StopIteration:  # a cancelled call ends its request stream too
            if self._watchdog.disarm(token):
                raise HubError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"{what}: the hub ended the call") from None
            raise
        except BaseException:
            self._watchdog.disarm(token)
            raise
        expired = self._watchdog.disarm(token)
        if expired:
            raise HubError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           f"{what}: the hub ended the call; send messages without pausing")
        if isinstance(message, Malformed):
            raise HubError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"request message {self.count + 1} of {self._method} is not a valid "
                           f"protobuf message of that method ({message.reason}): check the "
                           "client's .proto version")
        self.count += 1
        return message


class Admission(grpc.ServerInterceptor):
    """The interceptor; :meth:`server_options` gives the matching ``grpc.server`` options."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        lim = self.limits
        self.groups = {name: _Group(name, g, futures.ThreadPoolExecutor(
                           max_workers=g.threads, thread_name_prefix=f"moma-hub-{name}"))
                       for name, g in (("upload", lim.uploads), ("download", lim.downloads),
                                       ("unary", lim.unary), ("other", lim.other))}
        self.refusals = futures.ThreadPoolExecutor(max_workers=lim.refusal_threads,
                                                   thread_name_prefix="moma-hub-refuse")
        self.watchdog = Watchdog()

    def server_options(self) -> list[tuple[str, int]]:
        return [("grpc.max_concurrent_streams", self.limits.streams_per_connection)]

    def shutdown(self) -> None:
        for group in self.groups.values():
            group.pool.shutdown(wait=False, cancel_futures=True)
        self.refusals.shutdown(wait=False, cancel_futures=True)

    def _group(self, method: str, handler: grpc.RpcMethodHandler) -> _Group:
        if method == UPLOAD_METHOD:
            return self.groups["upload"]
        if method == DOWNLOAD_METHOD:
            return self.groups["download"]
        if handler.request_streaming or handler.response_streaming:
            return self.groups["other"]
        return self.groups["unary"]

    def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails],
                                                       grpc.RpcMethodHandler | None],
                          handler_call_details: grpc.HandlerCallDetails
                          ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        group = self._group(method, handler)
        if not group.reserve():
            return self._refusal(f"the hub is at its limit of {group.limit.total} concurrent "
                                 f"{group.name} calls: retry in a few seconds")
        return self._admitted(handler, group, method)

    def _refusal(self, message: str) -> grpc.RpcMethodHandler:
        def refuse(_requests: Iterator[Any], context: grpc.ServicerContext) -> None:
            log.info("refused a call from %s: %s", _peer_host(context), message)
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)

        refuse.experimental_thread_pool = self.refusals  # type: ignore[attr-defined]
        return grpc.stream_unary_rpc_method_handler(refuse)

    def _admitted(self, handler: grpc.RpcMethodHandler, group: _Group,
                  method: str) -> grpc.RpcMethodHandler:
        lim, watchdog = self.limits, self.watchdog

        def admit(requests: Iterator[Any], context: grpc.ServicerContext) -> TimedRequests:
            peer = call_client_address(context, lim.trusted_proxies)
            entered = group.enter(peer)
            done = threading.Event()

            def release() -> None:
                if not done.is_set():
                    done.set()
                    group.leave(peer if entered else None)

            if not context.add_callback(release):  # the call already ended
                release()
            if not entered:
                message = (f"{peer} already has {group.limit.per_peer} concurrent {group.name} "
                           "calls on this hub: wait for them to end")
                log.info("refused a call: %s", message)
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
            return TimedRequests(requests, context, watchdog, lim.first_message_s,
                                 lim.idle_s, method)

        def single(requests: TimedRequests, context: grpc.ServicerContext) -> Any:
            try:
                first = next(requests, None)
            except HubError as exc:
                context.abort(exc.code, exc.message)
            if first is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"{method} takes exactly one request message and got none")
            return first

        def responses(produced: Iterator[Any],
                      context: grpc.ServicerContext) -> Iterator[Any]:
            """Pass responses through, timing how long the client takes to accept each."""
            token = None
            try:
                for item in produced:
                    token = watchdog.arm(lim.idle_s, context,
                                         f"{method}: the client took no response for "
                                         f"{lim.idle_s:g} s")
                    yield item
                    watchdog.disarm(token)
                    token = None
            finally:
                if token is not None:
                    watchdog.disarm(token)

        deserialize = lenient(handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.response_streaming:
            def stream_behavior(requests: Iterator[Any],
                                context: grpc.ServicerContext) -> Iterator[Any]:
                timed = admit(requests, context)
                if handler.request_streaming:
                    return responses(handler.stream_stream(timed, context), context)
                return responses(handler.unary_stream(single(timed, context), context), context)

            stream_behavior.experimental_thread_pool = group.pool  # type: ignore[attr-defined]
            return grpc.stream_stream_rpc_method_handler(
                stream_behavior, request_deserializer=deserialize, response_serializer=serialize)

        def unary_behavior(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            timed = admit(requests, context)
            if handler.request_streaming:
                return handler.stream_unary(timed, context)
            return handler.unary_unary(single(timed, context), context)

        unary_behavior.experimental_thread_pool = group.pool  # type: ignore[attr-defined]
        return grpc.stream_unary_rpc_method_handler(
            unary_behavior, request_deserializer=deserialize, response_serializer=serialize)
