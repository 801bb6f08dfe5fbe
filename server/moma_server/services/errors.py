"""RPC errors: a status code and a one-line message saying what to fix.

Service code raises :class:`HubError`; :func:`handle_errors` turns it into ``context.abort``
with that code. Faults of the hub's own storage are reported as what they are: a full disk
(or a database that says it is full) is RESOURCE_EXHAUSTED, a database that stays locked or
cannot be reached is UNAVAILABLE, each with its cause. Anything else that escapes is a bug:
it is logged with its traceback on the hub and the client gets INTERNAL with a message that
says so, never a stack trace.

A value a peer sent is echoed back only through :func:`shown`, which bounds and escapes it.
"""

from __future__ import annotations

import errno
import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger("moma_server")

F = TypeVar("F", bound=Callable[..., Any])


class HubError(Exception):
    """An error answered to the client with ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> HubError:
    return HubError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> HubError:
    return HubError(grpc.StatusCode.NOT_FOUND, message)


def precondition(message: str) -> HubError:
    return HubError(grpc.StatusCode.FAILED_PRECONDITION, message)


def unauthenticated(message: str) -> HubError:
    return HubError(grpc.StatusCode.UNAUTHENTICATED, message)


def denied(message: str) -> HubError:
    return HubError(grpc.StatusCode.PERMISSION_DENIED, message)


def shown(value: object, limit: int = 72) -> str:
    """``value`` quoted for a message: escaped (``repr``) and cut to ``limit`` characters.

    Ids and tokens come from the peer; an oversized one must not be echoed back whole.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | bytes) else len(text)
    return f"{text[:limit]}... ({size} characters)"


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _disk_full(exc: BaseException) -> OSError | None:
    """The disk-full error behind ``exc``: itself, or what it was raised while handling (a
    clean-up such as fsync that fails after a failed write hides the first error)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in _DISK_FULL:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def storage_error(exc: BaseException, method: str) -> HubError | None:
    """A HubError for a fault of the hub's disk or database, None for anything else."""
    full = _disk_full(exc)
    if full is not None:
        log.error("%s: the hub's storage is full: %s", method, full)
        return HubError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the hub's storage is full ({full.strerror}) during {method}: nothing "
                        "was committed; retry later, and tell the hub operator to free space")
    if isinstance(exc, OperationalError | PoolTimeoutError):
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        first = cause[0] if cause else type(exc).__name__
        log.error("%s: database fault: %s", method, first)
        if "full" in first.lower():
            return HubError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                            f"the hub's database is full ({first}) during {method}: nothing "
                            "was committed; retry later, and tell the hub operator")
        return HubError(grpc.StatusCode.UNAVAILABLE,
                        f"the hub's database is unavailable ({first}) during {method}: "
                        "nothing was committed; retry in a few seconds")
    return None


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> NoReturn:
    exc = storage_error(exc, method) or exc
    if isinstance(exc, HubError):
        log.info("%s refused: %s: %s", method, exc.code.name, exc.message)
        context.abort(exc.code, exc.message)
        raise AssertionError("context.abort returned")  # never: abort always raises
    if isinstance(exc, grpc.RpcError):  # reading the request stream of a client that left
        log.info("%s: the client cancelled or disconnected; what it sent so far is kept", method)
        context.abort(grpc.StatusCode.CANCELLED, "the client cancelled or disconnected")
        raise AssertionError("context.abort returned")
    log.exception("%s failed with an unexpected error", method)
    context.abort(grpc.StatusCode.INTERNAL,
                  f"internal hub error in {method} ({type(exc).__name__}); the hub log has the "
                  "details: retry, and report it to the hub operator if it persists")
    raise AssertionError("context.abort returned")


def handle_errors(func: F) -> F:
    """Decorate a servicer method (unary or server-streaming) to map errors to status codes.

    Service code never calls ``context.abort`` itself (it raises :class:`HubError`), so the
    exception ``abort`` raises is never caught here.
    """
    name = func.__name__
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def streaming(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from func(self, request, context)
            except Exception as exc:
                _abort(context, exc, name)

        return streaming  # type: ignore[return-value]

    @functools.wraps(func)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return func(self, request, context)
        except Exception as exc:
            _abort(context, exc, name)

    return unary  # type: ignore[return-value]

