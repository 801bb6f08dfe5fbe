"""What an operator signs to authenticate one OperatorService request."""

from __future__ import annotations

from moma.trust.canonical import canonical_json

OPERATOR_AUTH_FORMAT = "moma-operator-auth/1"


def operator_auth_payload(
    *, method: str, body_sha256: str, nonce: str, time_unix: int, key_id: str, hub_id: str
) -> bytes:
    """The canonical bytes an operator signs to authenticate one OperatorService request.

    ``method`` is the full gRPC method path (``/moma.hub.v1.OperatorService/ApproveModule``),
    ``body_sha256`` the hex sha256 of the request serialized deterministically with its
    ``auth`` field cleared (see ``protos/moma/hub/v1/hub.proto``). Binding method, body,
    audience, nonce and time means a captured signature authorizes nothing else, on no other
    hub, and only once.
    """
    return canonical_json(
        {
            "format": OPERATOR_AUTH_FORMAT,
            "method": method,
            "body_sha256": body_sha256,
            "nonce": nonce,
            "time": time_unix,
            "key_id": key_id,
            "hub_id": hub_id,
        }
    )
