"""What the coordinator and the labs agree on: the run spec, the join statement, pooled stats.

Only three kinds of things cross the wire: the run spec (public hyper-parameters), each lab's
*join statement* (signed by the lab's Ed25519 key: its key id, the property and unit of its
data, the base it pinned, its split sizes and the count/mean/M2 of its train targets), and
module tensors. The join statement is what lets the card list participants' key ids with proof:
the coordinator verifies each signature over the exact bytes received, and the statement binds
the run's random nonce so it cannot be replayed into another run.

Target normalization: every lab must standardize with the *same* mean and std, or FedAvg would
average heads that predict different scales. Each lab sends count, mean and M2 (sum of squared
deviations) of its train targets; the coordinator pools them exactly (Chan et al.'s parallel
variance) into the global train mean/std, which is what central training on the union would
use. This discloses each lab's target mean and spread (two numbers), never a label; the docs
say so. The stats are not covered by differential privacy.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import secrets
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from moma.errors import MomaError, TrustError
from moma.modules.card import TargetNormalizer
from moma.trust.canonical import canonical_json
from moma.trust.keys import key_id, public_key_from_b64, public_key_to_b64, sign, verify

JOIN_FORMAT = "moma-federation-join/1"
STATEMENT_KEY = "statement"
SIGNATURE_KEY = "signature"
PUBLIC_KEY_KEY = "public_key"
ARRAYS_KEY = "arrays"
CONFIG_KEY = "config"
METRICS_KEY = "metrics"
SPEC_KEY = "spec"
NUM_EXAMPLES = "num-examples"


class FederationError(MomaError):
    """A federation that cannot run or finish as declared (the message says why)."""


@dataclass
class RunSpec:
    """Everything the ServerApp needs, passed as Flower run config (``flwr run --run-config``).

    ``base`` is a full module folder on the coordinator's machine or ``scratch`` (a seeded
    random initialization). ``out`` is where the ServerApp writes the module: the ServerApp runs
    beside the SuperLink, i.e. on the coordinator's machine.
    """

    task: str
    property: str
    unit: str
    out: str
    backbone: str = "cgcnn"
    kind: str = "full"
    base: str = "scratch"
    split: str = "seed0"
    rounds: int = 5
    local_epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    head_lr_factor: float = 1.0
    seed: int = 0
    min_labs: int = 2
    expected_labs: int = 0
    round_timeout: float = 1800.0
    dp_clipping_norm: float = 0.0
    dp_noise_multiplier: float = 0.0
    coordinator_key_id: str = ""
    name: str = ""
    nonce: str = ""

    def to_run_config(self) -> dict[str, Any]:
        """Flower run config (hyphenated keys; values are str, int, float or bool)."""
        return {k.replace("_", "-"): v for k, v in asdict(self).items()}

    @classmethod
    def from_run_config(cls, config: dict[str, Any]) -> RunSpec:
        """Parse and type-check the run config; unknown keys are refused."""
        known = {f.name.replace("_", "-"): f for f in fields(cls)}
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise FederationError(f"run config key {unknown[0]!r} is unknown; known keys: "
                                  f"{', '.join(sorted(known))}")
        casts: dict[str, type] = {"str": str, "int": int, "float": float}
        values: dict[str, Any] = {}
        for key, value in config.items():
            f = known[key]
            cast = casts[str(f.type)]
            if isinstance(value, bool) or (cast is int and isinstance(value, float)):
                raise FederationError(f"run config {key}={value!r} is not a valid {f.type}")
            try:
                values[f.name] = cast(value)
            except (TypeError, ValueError):
                raise FederationError(f"run config {key}={value!r} is not a valid "
                                      f"{f.type}") from None
        for required in ("task", "property", "unit", "out"):
            if not values.get(required):
                raise FederationError(f"run config lacks {required!r}")
        spec = cls(**values)
        if spec.kind not in ("full", "adapter"):
            raise FederationError(f"kind {spec.kind!r}: choose full or adapter")
        if spec.rounds < 1 or spec.local_epochs < 1 or spec.min_labs < 1:
            raise FederationError("rounds, local-epochs and min-labs must be >= 1")
        if spec.dp_noise_multiplier < 0 or spec.dp_clipping_norm < 0:
            raise FederationError("DP clipping norm and noise multiplier must be >= 0")
        if spec.dp_noise_multiplier > 0 and spec.dp_clipping_norm <= 0:
            raise FederationError("DP noise needs a clipping norm > 0 (--dp-clipping-norm)")
        return spec

    def dp_enabled(self) -> bool:
        return self.dp_clipping_norm > 0

    def with_nonce(self) -> RunSpec:
        """A copy with a fresh random nonce (binds join statements to this run)."""
        return RunSpec(**{**asdict(self), "nonce": secrets.token_hex(16)})


# -- target statistics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetStats:
    """Count, mean and M2 (sum of squared deviations) of a lab's train targets."""

    count: int
    mean: float
    m2: float

    @classmethod
    def of(cls, values: np.ndarray) -> TargetStats:
        y = np.asarray(values, dtype=np.float64)
        if y.size == 0:
            return cls(0, 0.0, 0.0)
        mean = float(y.mean())
        return cls(int(y.size), mean, float(((y - mean) ** 2).sum()))

    def merge(self, other: TargetStats) -> TargetStats:
        """Chan's pairwise update: the stats of the union, exactly (up to rounding)."""
        n = self.count + other.count
        if n == 0:
            return TargetStats(0, 0.0, 0.0)
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return TargetStats(n, mean, m2)


def pooled_normalizer(stats: list[TargetStats]) -> TargetNormalizer:
    """The normalizer central training on the union would use (population std, as
    :func:`moma.training.run.normalizer_for`)."""
    total = TargetStats(0, 0.0, 0.0)
    for s in stats:
        total = total.merge(s)
    if total.count == 0:
        raise FederationError("no lab has training records")
    std = math.sqrt(total.m2 / total.count)
    return TargetNormalizer(mean=total.mean, std=std if std > 1e-12 else 1.0)


# -- join statements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JoinStatement:
    """A lab's signed answer to the handshake (parsed from the exact bytes it signed)."""

    key_id: str
    public_key: str
    nonce: str
    property: str
    unit: str
    dataset: str
    base_sha256: str
    sizes: dict[str, int]
    stats: TargetStats
    raw: bytes
    signature: bytes

    def participant(self) -> dict[str, Any]:
        """The card's ``participants`` entry: key id, sizes and the verifiable statement."""
        return {
            "key_id": self.key_id,
            "public_key": self.public_key,
            "dataset": self.dataset,
            "dataset_size": dict(self.sizes),
            "join_statement": self.raw.decode("utf-8"),
            "join_signature": base64.b64encode(self.signature).decode("ascii"),
        }


def make_join_statement(private_key: Ed25519PrivateKey, *, nonce: str, prop: str, unit: str,
                        dataset: str, base_sha256: str, sizes: dict[str, int],
                        stats: TargetStats) -> tuple[bytes, bytes, str]:
    """(statement bytes, signature, public key b64) for the handshake reply."""
    public = public_key_to_b64(private_key.public_key())
    body = {
        "format": JOIN_FORMAT,
        "key_id": key_id(private_key.public_key()),
        "nonce": nonce,
        "property": prop,
        "unit": unit,
        "dataset": dataset,
        "base_sha256": base_sha256,
        "sizes": {k: int(v) for k, v in sizes.items()},
        "stats": {"count": stats.count, "mean": stats.mean, "m2": stats.m2},
    }
    raw = canonical_json(body)
    return raw, sign(private_key, raw), public


def parse_join_statement(raw: bytes, signature: bytes, public_key_b64: str,
                         nonce: str) -> JoinStatement:
    """Verify the signature over ``raw``, then parse it; :class:`TrustError` on any mismatch."""
    public = public_key_from_b64(public_key_b64)
    if not verify(public, raw, signature):
        raise TrustError("join statement signature does not verify")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise TrustError("join statement is not UTF-8 JSON") from None
    if not isinstance(body, dict) or body.get("format") != JOIN_FORMAT:
        raise TrustError(f"join statement is not {JOIN_FORMAT}")
    if canonical_json(body) != raw:
        raise TrustError("join statement is not in canonical form")
    if body.get("nonce") != nonce:
        raise TrustError("join statement was made for another run (nonce differs)")
    if body.get("key_id") != key_id(public):
        raise TrustError("join statement key id does not match its public key")
    try:
        sizes = {str(k): int(v) for k, v in body["sizes"].items()}
        st = body["stats"]
        stats = TargetStats(int(st["count"]), float(st["mean"]), float(st["m2"]))
        return JoinStatement(
            key_id=str(body["key_id"]), public_key=public_key_b64, nonce=nonce,
            property=str(body["property"]), unit=str(body["unit"]),
            dataset=str(body["dataset"]), base_sha256=str(body["base_sha256"]),
            sizes=sizes, stats=stats, raw=raw, signature=signature)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TrustError(f"join statement is malformed ({exc})") from None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TrustError("field is not valid base64") from None
