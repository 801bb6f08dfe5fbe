"""Authentication of OperatorService requests (the scheme of ``OperatorAuth`` in hub.proto).

Operator keys are configured on the hub host at ``serve`` time and never enrolled over the
network, so a stolen operator key cannot mint more. Every request carries a signature over
the method, the digest of the request body (``auth`` cleared, deterministic serialization),
a fresh nonce, the time and this hub's id: a captured request authorizes nothing else, on no
other hub, and only once.
"""

from __future__ import annotations

import hashlib
import re
import time

from google.protobuf.message import Message

from moma.trust.keys import public_key_from_raw, verify
from moma.trust.operator_auth import operator_auth_payload
from moma_server.services.errors import denied, shown, unauthenticated
from moma_server.services.hub import Hub
from moma_server.store.metadata import ReplayError

SERVICE_PATH = "/moma.hub.v1.OperatorService/"
_NONCE = re.compile(r"[0-9a-f]{32}")
_FIX = "sign each request with `moma-hub` and an operator key configured on the hub"


def body_sha256(request: Message) -> str:
    """Hex sha256 of ``request`` with ``auth`` cleared, serialized deterministically."""
    body = type(request)()
    body.CopyFrom(request)
    body.ClearField("auth")
    return hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()


def authenticate(hub: Hub, request: Message, method: str) -> str:
    """The operator key id that validly signed ``request`` for ``method``; HubError otherwise."""
    if not request.HasField("auth"):
        raise unauthenticated(f"{method} needs an OperatorAuth: {_FIX}")
    auth = request.auth  # type: ignore[attr-defined]
    cfg = hub.config
    kid = auth.key_id
    payload = operator_auth_payload(method=SERVICE_PATH + method, body_sha256=body_sha256(request),
                                    nonce=auth.nonce, time_unix=auth.time, key_id=kid,
                                    hub_id=cfg.hub_id)
    public = cfg.operator_keys.get(kid)
    if public is None:
        lab = hub.metadata.get_key(kid)
        if lab is None:
            raise unauthenticated(f"unknown operator key {shown(kid)}: {_FIX}")
        if not verify(public_key_from_raw(lab.public_key), payload, auth.signature):
            raise unauthenticated(f"bad operator signature for {method} by key {kid}: {_FIX}")
        what = "a revoked lab key" if lab.revoked_at else f"the lab key of {lab.lab_name!r}"
        raise denied(f"key {kid} is {what}, not an operator key: operator RPCs need a key "
                     "passed to `moma-hub serve --operator-key`")
    if not verify(public, payload, auth.signature):
        raise unauthenticated(f"bad operator signature for {method} by key {kid}: the request "
                              f"was altered or signed for another hub or method; {_FIX}")
    if not _NONCE.fullmatch(auth.nonce):
        raise unauthenticated("operator nonce must be 32 lowercase hex characters (128 random "
                              f"bits): {_FIX}")
    skew = auth.time - time.time()
    if abs(skew) > cfg.tolerance_s:
        raise unauthenticated(f"operator request time is {skew:+.0f} s from the hub's clock "
                              f"(allowed ±{cfg.tolerance_s} s): check the clock and retry")
    try:
        hub.metadata.consume_nonce(auth.nonce, "operator", kid)
    except ReplayError:
        raise unauthenticated(f"replayed operator request: nonce {auth.nonce} was already used: "
                              "send a new request") from None
    return kid
