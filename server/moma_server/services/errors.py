"""RPC errors: a status code and a one-line message saying what to fix.

Service code raises :class:`HubError`; :func:`handle_errors` turns it into ``context.abort``
with that code. Anything else that escapes is a bug: it is logged with its traceback on the
hub and the client gets INTERNAL with a message that says so, never a stack trace.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import grpc

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


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> NoReturn:
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

