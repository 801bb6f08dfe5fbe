"""``moma-hub serve``: run the hub (gRPC) over TLS, or plaintext on loopback by choice."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from moma.errors import MomaError
from moma_server.services.defaults import (
    DEFAULT_MAX_MODULE_BYTES,
    DEFAULT_TOLERANCE_S,
    DEFAULT_UPLOAD_TTL_S,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from moma_server.services.fingerprinting import Fingerprinter
    from moma_server.transport import TlsFiles

HUB_ID_FILE = "hub_id"
HUB_KEY_FILE = "hub_key.pem"


def _operator_key(value: str) -> Ed25519PublicKey:
    from moma.trust.keys import load_public_key, public_key_from_b64

    path = Path(value)
    return load_public_key(path) if path.is_file() else public_key_from_b64(value)


def _hub_id(hub_id: str | None, store: Path) -> str:
    if hub_id:
        return hub_id
    saved = store / HUB_ID_FILE
    if saved.is_file():
        return saved.read_text(encoding="utf-8").strip()
    raise MomaError(f"no --hub-id and no {saved}: pass --hub-id (the audience contributors put "
                    "in their manifests) or run `moma-hub init --store DIR` first")


def serve_command(
    store: str = typer.Option(..., "--store", help="Folder of the content-addressed blobs, or "
                              "s3://BUCKET/PREFIX (endpoint and credentials from the AWS_* "
                              "environment or AWS config files; needs --db, --hub-key, --hub-id)."),
    db: str = typer.Option("", "--db", help="SQLAlchemy URL: sqlite:///path (default: "
                           "STORE/hub.db) or postgresql+psycopg://user:pw@host/db."),
    listen: str = typer.Option("127.0.0.1:50051", "--listen", help="host:port (port 0: any)."),
    hub_key: Path | None = typer.Option(None, "--hub-key", help="Hub private key (PEM, 0600); "
                                        "default STORE/hub_key.pem."),
    hub_id: str | None = typer.Option(None, "--hub-id", help="This hub's id (manifest audience);"
                                      " default: the one `moma-hub init` saved."),
    operator_key: list[str] = typer.Option([], "--operator-key", help="Operator public key "
                                           "(PEM file or base64), repeatable."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Server certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Server private key (PEM)."),
    client_ca: Path | None = typer.Option(None, "--client-ca", help="Require client certs "
                                          "signed by this CA (mutual TLS)."),
    insecure: bool = typer.Option(False, "--insecure", help="Plaintext; loopback only."),
    force_insecure: bool = typer.Option(False, "--force-insecure",
                                        help="Allow --insecure on a non-loopback address."),
    max_module_bytes: int = typer.Option(DEFAULT_MAX_MODULE_BYTES, "--max-module-bytes",
                                         min=1, help="Largest module accepted."),
    tolerance_s: int = typer.Option(DEFAULT_TOLERANCE_S, "--tolerance-s", min=1,
                                    help="Allowed clock skew of signed requests."),
    upload_ttl_s: int = typer.Option(DEFAULT_UPLOAD_TTL_S, "--upload-ttl-s", min=60,
                                     help="How long an unfinished upload can be resumed."),
    probe_set: str = typer.Option("", "--probe-set", help="Public probe set every module is "
                                  "fingerprinted on (JSON records); default: moma-probes/1. "
                                  "'none' runs no probes."),
    idle_timeout_s: float = typer.Option(60.0, "--idle-timeout-s", min=0.5,
                                         help="Longest pause of a client inside a call (the "
                                         "first message: at most 10 s); then it is ended."),
    trusted_proxy: list[str] = typer.Option(
        [], "--trusted-proxy", help="Address or network (CIDR) of a proxy in front of this hub "
        "(nginx grpc_pass), repeatable: its x-forwarded-for header names the client that "
        "per-client limits count. Default: none (every call counts against its connection's "
        "address)."),
    log_level: str = typer.Option("INFO", "--log-level"),
) -> None:
    """Serve ModuleService and OperatorService, with health checking and reflection."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tls = _transport(listen, insecure, force_insecure, tls_cert, tls_key, client_ca)
    from moma_server.client_address import parse_trusted

    try:
        proxies = parse_trusted(trusted_proxy)
    except ValueError as exc:
        raise MomaError(str(exc)) from None
    # Imported only now: the services load torch (module checks), which operator commands and
    # a refused configuration never need.
    from moma.trust.keys import key_id, load_private_key
    from moma_server.admission import Limits
    from moma_server.server import serve
    from moma_server.services.hub import Hub, HubConfig
    from moma_server.store.blobs import BlobStore, FileBlobStore
    from moma_server.store.metadata import MetadataStore

    blobs: BlobStore
    if store.startswith("s3://"):
        from moma_server.store.s3 import S3BlobStore

        if not (db and hub_key and hub_id):
            raise MomaError("--store s3://... is shared by replicas and holds no local files: "
                            "pass --db (PostgreSQL), --hub-key and --hub-id")
        blobs = S3BlobStore.from_url(store)
        folder = Path(".")
    else:
        folder = Path(store)
        folder.mkdir(parents=True, exist_ok=True)
        blobs = FileBlobStore(folder)
    key = load_private_key(hub_key or folder / HUB_KEY_FILE)
    operators = {key_id(k): k for k in map(_operator_key, operator_key)}
    if not operators:
        logging.getLogger("moma_server").warning(
            "no --operator-key: nobody can enroll keys or approve modules on this hub")
    config = HubConfig(hub_id=_hub_id(hub_id, folder), hub_key=key, operator_keys=operators,
                       max_module_bytes=max_module_bytes, tolerance_s=tolerance_s,
                       upload_ttl_s=upload_ttl_s)
    hub = Hub(config, MetadataStore(db or f"sqlite:///{(folder / 'hub.db').resolve()}"), blobs,
              probes=_probes(probe_set))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    def ready(port: int) -> None:
        host = listen.rsplit(":", 1)[0]
        mode = "insecure" if tls is None else ("mtls" if client_ca else "tls")
        typer.echo(f"moma-hub listening on {host}:{port} ({mode}) hub_id={config.hub_id} "
                   f"hub_key_id={config.hub_key_id}", err=False)
        sys.stdout.flush()

    serve(hub, listen, tls, stop, on_ready=ready, limits=Limits.with_idle(idle_timeout_s, proxies))
    # Everything is committed and closed by now; skip the interpreter's teardown of torch and
    # friends (about a second) so restarts and supervisors are not kept waiting.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _probes(value: str) -> Fingerprinter | None:
    from moma.probes.probe_set import load_probe_set
    from moma_server.services.fingerprinting import Fingerprinter

    if value == "none":
        return None
    import torch

    # probe runs happen on request threads, up to two at once: one torch thread each keeps
    # them from oversubscribing the cores (measured: 10 s instead of 0.7 s per CGCNN probe run
    # with the default thread count on a loaded 2-core machine)
    torch.set_num_threads(1)
    return Fingerprinter(load_probe_set(value))


def _transport(listen: str, insecure: bool, force: bool, cert: Path | None, key: Path | None,
               client_ca: Path | None) -> TlsFiles | None:
    from moma_server.transport import TlsFiles, is_loopback

    if insecure:
        if cert or key or client_ca:
            raise MomaError("--insecure with TLS files: choose one (drop --insecure for TLS)")
        if not is_loopback(listen) and not force:
            raise MomaError(f"refusing plaintext on non-loopback address {listen}: serve TLS "
                            "(--tls-cert/--tls-key), listen on 127.0.0.1, or add "
                            "--force-insecure if a TLS proxy fronts this hub")
        return None
    if not (cert and key):
        raise MomaError("TLS needs --tls-cert and --tls-key (or pass --insecure to serve "
                        "plaintext on loopback)")
    return TlsFiles(cert, key, client_ca)
