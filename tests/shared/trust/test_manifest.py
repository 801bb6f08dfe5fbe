"""Signed manifests and countersignatures: every refusal the hub and clients rely on."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from moma.errors import TrustError
from moma.trust.canonical import canonical_json, format_utc, parse_utc
from moma.trust.countersignature import Countersignature, countersign, verify_countersignature
from moma.trust.keys import KeyPair, generate_keypair, key_id, sign, verify
from moma.trust.manifest import (
    Manifest,
    SignedManifest,
    build_manifest,
    parse_manifest,
    sign_manifest,
    verify_manifest,
    verify_manifest_signature,
    verify_payload,
)
from moma.trust.operator_auth import operator_auth_payload

NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
HUB = "hub.example"
MODULE = b"\x00safetensors bytes\xff" * 10
CARD = {"backbone": "cgcnn", "task": "band_gap", "metrics": {"val_mae": 0.25}, "unit": "eV"}


@pytest.fixture
def lab() -> KeyPair:
    return generate_keypair()


def _manifest(lab: KeyPair, **overrides: Any) -> Manifest:
    fields: dict[str, Any] = {
        "module_sha256": hashlib.sha256(MODULE).hexdigest(),
        "module_size": len(MODULE),
        "card": CARD,
        "contributor_key_id": key_id(lab.public),
        "hub_id": HUB,
        "now": NOW,
    }
    fields.update(overrides)
    return build_manifest(**fields)


class Hub:
    """What a hub keeps for verification: enrolled keys, revocations, used nonces."""

    def __init__(self, *enrolled: Ed25519PublicKey) -> None:
        self.keys = {key_id(k): k for k in enrolled}
        self.revoked: set[str] = set()
        self.nonces: set[str] = set()
        self.nonce_calls = 0

    def seen(self, nonce: str) -> bool:
        self.nonce_calls += 1
        if nonce in self.nonces:
            return True
        self.nonces.add(nonce)
        return False

    def verify(self, signed: SignedManifest, now: datetime = NOW) -> Manifest:
        return verify_manifest(
            signed,
            self.keys,
            hub_id=HUB,
            now=now,
            tolerance_s=300,
            nonce_seen=self.seen,
            revoked=self.revoked,
        )


# -- canonical JSON -----------------------------------------------------------------------------


def test_canonical_json_is_stable_across_key_order() -> None:
    a = {"b": 1, "a": {"d": [1, 2.5, None, True], "c": "é"}}
    b = {"a": {"c": "é", "d": [1, 2.5, None, True]}, "b": 1}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == '{"a":{"c":"é","d":[1,2.5,null,true]},"b":1}'.encode()
    assert "é".encode() in canonical_json(a)  # UTF-8, not \u escapes


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_canonical_json_rejects_non_finite(bad: float) -> None:
    with pytest.raises(TrustError, match=r"non-finite number .* at \$\.metrics\.val_mae\[1\]"):
        canonical_json({"metrics": {"val_mae": [0.1, bad]}})


def test_canonical_json_rejects_non_string_keys_and_non_json_values() -> None:
    with pytest.raises(TrustError, match="not a string"):
        canonical_json({1: "a", "1": "b"})
    with pytest.raises(TrustError, match="type bytes"):
        canonical_json({"a": b"x"})


def test_utc_times_round_trip_and_refuse_other_spellings() -> None:
    assert format_utc(NOW) == "2025-03-01T12:00:00Z"
    plus_two = datetime(2025, 3, 1, 16, 0, 0, 999, tzinfo=timezone(timedelta(hours=2)))
    assert format_utc(plus_two) == "2025-03-01T14:00:00Z"  # converted to UTC, whole seconds
    assert parse_utc("2025-03-01T12:00:00Z") == NOW
    for bad in ["2025-03-01T12:00:00+00:00", "2025-03-01 12:00:00Z", "2025-02-30T12:00:00Z"]:
        with pytest.raises(TrustError):
            parse_utc(bad)


# -- manifests ----------------------------------------------------------------------------------


def test_sign_and_verify_round_trip(lab: KeyPair) -> None:
    manifest = _manifest(lab)
    assert len(manifest.nonce) == 32
    assert manifest.issued_at == "2025-03-01T12:00:00Z"
    signed = sign_manifest(manifest, lab.private)
    assert signed.manifest_bytes == canonical_json(json.loads(signed.manifest_bytes))
    hub = Hub(lab.public)
    assert hub.verify(signed) == manifest
    assert hub.nonce_calls == 1
    assert parse_manifest(signed.manifest_bytes) == manifest
    assert verify_manifest_signature(signed, lab.public) == manifest


def test_nonces_are_fresh(lab: KeyPair) -> None:
    assert _manifest(lab).nonce != _manifest(lab).nonce


def test_sign_manifest_refuses_a_key_the_manifest_does_not_name(lab: KeyPair) -> None:
    with pytest.raises(TrustError, match="being signed with key"):
        sign_manifest(_manifest(lab), generate_keypair().private)


def test_build_manifest_refuses_bad_fields(lab: KeyPair) -> None:
    with pytest.raises(TrustError, match="module_sha256 'ABC' is not 64 lowercase hex"):
        _manifest(lab, module_sha256="ABC")
    with pytest.raises(TrustError, match="module_size -1 is not a byte count"):
        _manifest(lab, module_size=-1)
    with pytest.raises(TrustError, match="hub_id is empty"):
        _manifest(lab, hub_id="")
    with pytest.raises(TrustError, match="non-finite"):
        _manifest(lab, card={"metrics": {"val_mae": float("nan")}})


def _resign(lab: KeyPair, obj: dict[str, Any], raw: bytes | None = None) -> SignedManifest:
    data = raw if raw is not None else canonical_json(obj)
    return SignedManifest(data, sign(lab.private, data))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: b"\xff\xfe", "not valid UTF-8 JSON"),
        (lambda d: b"[1,2]", "not a JSON object"),
        (lambda d: json.dumps(d, sort_keys=True).encode(), "not in canonical JSON form"),
        (lambda d: json.dumps(d).encode(), "not in canonical JSON form"),
        (lambda d: canonical_json(d)[:-1] + b',"hub_id":"x"}', "duplicate key 'hub_id'"),
        (lambda d: canonical_json({**d, "extra": 1}), r"unknown fields \['extra'\]"),
        (lambda d: canonical_json({k: v for k, v in d.items() if k != "nonce"}), "missing"),
        (lambda d: canonical_json({**d, "format": "moma-manifest/2"}), "format"),
        (lambda d: canonical_json({**d, "module_size": True}), "not a byte count"),
        (lambda d: canonical_json({**d, "nonce": "00"}), "nonce '00' is not 32 lowercase hex"),
        (lambda d: canonical_json({**d, "issued_at": "yesterday"}), "issued_at"),
        (lambda d: canonical_json({**d, "card": [1]}), "card is not a JSON object"),
        (lambda d: b'{"a":NaN}', "NaN is not valid JSON"),
    ],
)
def test_malformed_manifests_are_refused(lab: KeyPair, mutate: Any, message: str) -> None:
    good = json.loads(sign_manifest(_manifest(lab), lab.private).manifest_bytes)
    signed = _resign(lab, good, mutate(good))  # validly signed, yet malformed
    hub = Hub(lab.public)
    with pytest.raises(TrustError, match=f"malformed manifest.*{message}"):
        hub.verify(signed)
    assert hub.nonce_calls == 0


def test_unknown_key_is_refused(lab: KeyPair) -> None:
    signed = sign_manifest(_manifest(lab), lab.private)
    with pytest.raises(TrustError, match=f"unknown contributor key {key_id(lab.public)}.*enroll"):
        Hub(generate_keypair().public).verify(signed)


def test_revoked_key_is_refused(lab: KeyPair) -> None:
    hub = Hub(lab.public)
    hub.revoked.add(key_id(lab.public))
    with pytest.raises(TrustError, match=f"contributor key {key_id(lab.public)} has been revoked"):
        hub.verify(sign_manifest(_manifest(lab), lab.private))
    assert hub.nonce_calls == 0


def test_bad_signatures_are_refused(lab: KeyPair) -> None:
    signed = sign_manifest(_manifest(lab), lab.private)
    hub = Hub(lab.public)
    flipped = bytes([signed.signature[0] ^ 1]) + signed.signature[1:]
    with pytest.raises(TrustError, match="bad signature on manifest"):
        hub.verify(SignedManifest(signed.manifest_bytes, flipped))
    # The bytes changed after signing (still canonical: the size is another number).
    size = str(len(MODULE)).encode()
    altered = signed.manifest_bytes.replace(size, str(len(MODULE) + 1).encode())
    assert altered != signed.manifest_bytes
    with pytest.raises(TrustError, match="bad signature on manifest"):
        hub.verify(SignedManifest(altered, signed.signature))
    # Signed by someone else who claims the lab's key id.
    impostor = generate_keypair()
    with pytest.raises(TrustError, match="bad signature on manifest"):
        hub.verify(SignedManifest(signed.manifest_bytes, sign(impostor.private, altered)))
    assert hub.nonce_calls == 0


def test_manifest_for_another_hub_is_refused(lab: KeyPair) -> None:
    signed = sign_manifest(_manifest(lab, hub_id="other.hub"), lab.private)
    with pytest.raises(
        TrustError, match=r"manifest is for hub 'other\.hub', this is hub 'hub\.example'"
    ):
        Hub(lab.public).verify(signed)


def test_replayed_nonce_is_refused(lab: KeyPair) -> None:
    signed = sign_manifest(_manifest(lab), lab.private)
    hub = Hub(lab.public)
    hub.verify(signed)
    with pytest.raises(TrustError, match="replayed manifest: nonce"):
        hub.verify(signed)
    hub.verify(sign_manifest(_manifest(lab), lab.private))  # a new nonce is fine


@pytest.mark.parametrize("offset_s", [-301, 301, -86400])
def test_issue_time_outside_window_is_refused(lab: KeyPair, offset_s: int) -> None:
    signed = sign_manifest(_manifest(lab, now=NOW + timedelta(seconds=offset_s)), lab.private)
    hub = Hub(lab.public)
    with pytest.raises(
        TrustError, match=re.escape(f"{offset_s:+d} s from hub time") + r".* \(allowed ±300 s\)"
    ):
        hub.verify(signed)
    assert hub.nonce_calls == 0  # a refused manifest does not burn its nonce


@pytest.mark.parametrize("offset_s", [-300, 0, 299])
def test_issue_time_inside_window_is_accepted(lab: KeyPair, offset_s: int) -> None:
    signed = sign_manifest(_manifest(lab, now=NOW + timedelta(seconds=offset_s)), lab.private)
    Hub(lab.public).verify(signed)


def test_naive_now_is_a_programming_error(lab: KeyPair) -> None:
    signed = sign_manifest(_manifest(lab), lab.private)
    with pytest.raises(ValueError, match="timezone-aware"):
        Hub(lab.public).verify(signed, now=NOW.replace(tzinfo=None))


def test_verify_manifest_signature_refuses_a_different_key(lab: KeyPair) -> None:
    signed = sign_manifest(_manifest(lab), lab.private)
    with pytest.raises(TrustError, match="but the key given has id"):
        verify_manifest_signature(signed, generate_keypair().public)


def test_verify_payload(lab: KeyPair) -> None:
    manifest = _manifest(lab)
    verify_payload(manifest, hashlib.sha256(MODULE).hexdigest(), len(MODULE))
    verify_payload(manifest, hashlib.sha256(MODULE).hexdigest().upper(), len(MODULE))
    with pytest.raises(TrustError, match=f"module size 5 does not match .* {len(MODULE)} bytes"):
        verify_payload(manifest, hashlib.sha256(MODULE).hexdigest(), 5)
    other = hashlib.sha256(MODULE + b"!").hexdigest()
    with pytest.raises(TrustError, match=f"module sha256 {other} does not match"):
        verify_payload(manifest, other, len(MODULE))


# -- countersignatures --------------------------------------------------------------------------


def test_countersignature_round_trip(lab: KeyPair) -> None:
    hub_key = generate_keypair()
    signed = sign_manifest(_manifest(lab), lab.private)
    cs = countersign(signed, hub_key.private, now=NOW)
    assert cs.manifest_sha256 == hashlib.sha256(signed.manifest_bytes).hexdigest()
    assert cs.module_sha256 == hashlib.sha256(MODULE).hexdigest()
    assert (cs.state, cs.time, cs.hub_key_id) == (
        "approved",
        format_utc(NOW),
        key_id(hub_key.public),
    )
    assert verify(hub_key.public, cs.payload(), cs.signature)
    assert json.loads(cs.payload())["format"] == "moma-countersignature/1"
    verify_countersignature(cs, signed, hub_key.public)


def test_countersignature_refusals(lab: KeyPair) -> None:
    hub_key = generate_keypair()
    signed = sign_manifest(_manifest(lab), lab.private)
    cs = countersign(signed, hub_key.private, now=NOW)

    with pytest.raises(TrustError, match="but the pinned hub key is"):
        verify_countersignature(cs, signed, generate_keypair().public)

    tampered = replace(cs, state="approved ", time="2030-01-01T00:00:00Z")
    with pytest.raises(TrustError, match="bad hub countersignature"):
        verify_countersignature(tampered, signed, hub_key.public)

    other = sign_manifest(_manifest(lab), lab.private)  # same module, another manifest
    with pytest.raises(TrustError, match="covers another manifest"):
        verify_countersignature(cs, other, hub_key.public)

    revoked = countersign(signed, hub_key.private, state="revoked", now=NOW)
    with pytest.raises(TrustError, match="is 'revoked' at the hub, not approved"):
        verify_countersignature(revoked, signed, hub_key.public)
    verify_countersignature(revoked, signed, hub_key.public, accepted_states={"revoked"})


def test_countersignature_naming_another_module_is_refused(lab: KeyPair) -> None:
    hub_key = generate_keypair()
    signed = sign_manifest(_manifest(lab), lab.private)
    wrong = Countersignature(
        manifest_sha256=signed.manifest_sha256,
        module_sha256="0" * 64,
        state="approved",
        time=format_utc(NOW),
        hub_key_id=key_id(hub_key.public),
        signature=b"",
    )
    wrong = replace(wrong, signature=sign(hub_key.private, wrong.payload()))
    with pytest.raises(TrustError, match="names module 0000"):
        verify_countersignature(wrong, signed, hub_key.public)


# -- operator authentication --------------------------------------------------------------------


def test_operator_auth_payload_binds_every_field() -> None:
    base: dict[str, Any] = {
        "method": "/moma.hub.v1.OperatorService/ApproveModule",
        "body_sha256": "ab" * 32,
        "nonce": "cd" * 16,
        "time_unix": 1_740_830_400,
        "key_id": "0123456789abcdef",
        "hub_id": HUB,
    }
    payload = operator_auth_payload(**base)
    assert json.loads(payload) == {
        "format": "moma-operator-auth/1",
        "method": base["method"],
        "body_sha256": base["body_sha256"],
        "nonce": base["nonce"],
        "time": base["time_unix"],
        "key_id": base["key_id"],
        "hub_id": HUB,
    }
    assert payload == canonical_json(json.loads(payload))
    changed = {"method": "/moma.hub.v1.OperatorService/RevokeModule", "time_unix": 1}
    for name, value in [*changed.items(), ("hub_id", "other"), ("nonce", "00" * 16)]:
        assert operator_auth_payload(**{**base, name: value}) != payload
