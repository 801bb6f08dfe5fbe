"""The gRPC server of the hub: both services, health checking and reflection.

Start-up first reconciles the stores (:func:`~moma_server.services.recovery.recover`), then
serves; the backbone schemas that uploads are checked against are built in the background so
the first FinishUpload does not pay for them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from moma.errors import MomaError
from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma_server.admission import Admission, Limits
from moma_server.services.fingerprint_service import FingerprintService
from moma_server.services.hub import Hub
from moma_server.services.module_service import ModuleService
from moma_server.services.operator_service import OperatorService
from moma_server.services.recovery import recover
from moma_server.services.validation import warm_up
from moma_server.transport import TlsFiles

log = logging.getLogger("moma_server")

SERVICE_NAMES = tuple(
    hub_pb2.DESCRIPTOR.services_by_name[name].full_name
    for name in ("ModuleService", "OperatorService", "FingerprintService")
)
# Chunks are <= 1 MiB; a little headroom for the envelope, never the limit of a module's size.
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def build_server(hub: Hub, listen: str, tls: TlsFiles | None,
                 limits: Limits | None = None) -> tuple[grpc.Server, int]:
    """A started-ready (not started) server bound to ``listen``; returns it and the bound port.

    Every call goes through :class:`~moma_server.admission.Admission`, which runs it on its
    group's own threads; the server's own pool only serves what no interceptor claimed.
    """
    admission = Admission(limits)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="moma-hub"),
        interceptors=[admission],
        maximum_concurrent_rpcs=admission.limits.max_concurrent_rpcs,
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                 ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                 *admission.server_options()])
    hub_pb2_grpc.add_ModuleServiceServicer_to_server(ModuleService(hub), server)
    hub_pb2_grpc.add_OperatorServiceServicer_to_server(OperatorService(hub), server)
    hub_pb2_grpc.add_FingerprintServiceServicer_to_server(FingerprintService(hub), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            port = server.add_secure_port(listen, tls.credentials())
    except RuntimeError as exc:
        raise MomaError(f"cannot listen on {listen}: {exc}; choose a free host:port") from None
    if port == 0:
        raise MomaError(f"cannot listen on {listen}: the address is in use or invalid; choose a "
                        "free host:port")
    return server, port


def serve(hub: Hub, listen: str, tls: TlsFiles | None, stop: threading.Event,
          on_ready: Callable[[int], None] | None = None, limits: Limits | None = None) -> None:
    """Recover the stores, start serving, block until ``stop`` is set, then stop gracefully."""
    recover(hub)
    threading.Thread(target=warm_up, name="moma-hub-warm-up", daemon=True).start()
    server, port = build_server(hub, listen, tls, limits)
    server.start()
    if on_ready is not None:
        on_ready(port)
    stop.wait()
    log.info("stopping: finishing in-flight requests (5 s grace)")
    server.stop(grace=5).wait()
    hub.metadata.close()
