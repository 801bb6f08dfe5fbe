"""A salted Bloom filter of a module's training structures, stored on its card.

Why a Bloom filter: it answers "was this structure in the set?" with no false negatives, a
false-positive rate chosen at build time (1e-4 by default), and about 19 bits per structure
(10,000 training structures take 24 KB, 32 KB as base64 in the card), without listing the
structures. Why salted: each module's filter uses its own random salt in an HMAC-SHA256 of the
canonical form, so filters of two modules cannot be compared bit by bit to learn what they
share, and no table precomputed for one filter serves another.

What it does not hide (docs/hub.md, "Data-overlap fingerprints"): anyone holding a candidate
structure can test it, so a holder of a public database learns which of its structures the
lab trained on (up to the false-positive rate). Publishing is therefore the lab's choice.

The overlap test (:func:`overlap`) compares the number of matches among the owner's structures
with the number the false-positive rate predicts, and calls it overlap only when chance is an
implausible explanation (binomial tail below ``alpha``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

from moma.data_overlap.canonical import CANONICAL_VERSION
from moma.errors import MomaError

FINGERPRINT_FORMAT = "moma-data-fingerprint/1"
DEFAULT_FALSE_POSITIVE_RATE = 1e-4
MAX_BITS = 2**21  # 256 KiB of bits, 350 KB as base64: well inside a card's 1 MiB
MAX_HASHES = 32
DEFAULT_ALPHA = 1e-3


@dataclass
class DataFingerprint:
    """Bloom filter bits with the parameters needed to query them."""

    salt: bytes
    n_items: int
    m_bits: int
    k_hashes: int
    bits: bytearray

    def _indices(self, key: str) -> list[int]:
        digest = hmac.new(self.salt, key.encode("utf-8"), hashlib.sha256).digest()
        h1 = int.from_bytes(digest[:8], "big")
        h2 = int.from_bytes(digest[8:16], "big") | 1
        return [(h1 + i * h2) % self.m_bits for i in range(self.k_hashes)]

    def add(self, key: str) -> None:
        for idx in self._indices(key):
            self.bits[idx >> 3] |= 1 << (idx & 7)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return all(self.bits[idx >> 3] >> (idx & 7) & 1 for idx in self._indices(key))

    @property
    def false_positive_rate(self) -> float:
        """The rate implied by the bits actually set: (fraction of ones) ** k."""
        ones = int(np.unpackbits(np.frombuffer(bytes(self.bits), dtype=np.uint8)).sum())
        return (ones / self.m_bits) ** self.k_hashes

    def to_json(self) -> dict[str, Any]:
        return {"format": FINGERPRINT_FORMAT, "canonical": CANONICAL_VERSION,
                "salt": self.salt.hex(), "n_items": self.n_items, "m_bits": self.m_bits,
                "k_hashes": self.k_hashes, "bits": base64.b64encode(bytes(self.bits)).decode()}

    @classmethod
    def from_json(cls, data: Any, source: str = "card") -> DataFingerprint:
        """Strict parse of an untrusted card entry; the error names the source."""
        def bad(why: str) -> MomaError:
            return MomaError(f"{source}: extra.data_fingerprint {why}; the module's fingerprint "
                             "cannot be used (ask its contributor to publish it again)")

        if not isinstance(data, dict) or data.get("format") != FINGERPRINT_FORMAT:
            raise bad(f"is not in format {FINGERPRINT_FORMAT}")
        if data.get("canonical") != CANONICAL_VERSION:
            raise bad(f"uses canonical form {data.get('canonical')!r}, not {CANONICAL_VERSION}")
        try:
            salt = bytes.fromhex(data["salt"])
            n_items, m_bits, k = int(data["n_items"]), int(data["m_bits"]), int(data["k_hashes"])
            raw = base64.b64decode(data["bits"], validate=True)
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"is malformed ({exc})") from None
        if not (16 <= len(salt) <= 64 and 0 < m_bits <= MAX_BITS and 1 <= k <= MAX_HASHES
                and n_items >= 0 and len(raw) == (m_bits + 7) // 8):
            raise bad("has out-of-range parameters")
        return cls(salt, n_items, m_bits, k, bytearray(raw))


def sizing(n_items: int, false_positive_rate: float) -> tuple[int, int]:
    """Optimal (m_bits, k_hashes) for ``n_items`` at ``false_positive_rate``, m capped."""
    n = max(1, n_items)
    m = math.ceil(-n * math.log(false_positive_rate) / math.log(2) ** 2)
    m = min(MAX_BITS, max(64, (m + 7) // 8 * 8))
    k = max(1, min(MAX_HASHES, round(m / n * math.log(2))))
    return m, k


def build_fingerprint(keys: Iterable[str], *,
                      false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE,
                      salt: bytes | None = None) -> DataFingerprint:
    """A fresh filter (random 16-byte salt unless given) holding every key."""
    unique = sorted(set(keys))
    if not 0 < false_positive_rate < 1:
        raise MomaError(f"fingerprint false-positive rate {false_positive_rate} must be in (0, 1)")
    m, k = sizing(len(unique), false_positive_rate)
    fp = DataFingerprint(salt or os.urandom(16), len(unique), m, k, bytearray((m + 7) // 8))
    for key in unique:
        fp.add(key)
    return fp


@dataclass(frozen=True)
class Overlap:
    """How many of the owner's structures a fingerprint matched, and whether that is overlap."""

    matches: int
    tested: int
    expected_by_chance: float
    overlapping: bool

    def sentence(self, what: str = "validation/test structures") -> str:
        verdict = "it saw them" if self.overlapping else "consistent with chance"
        return (f"{self.matches} of {self.tested} {what} are in its training fingerprint "
                f"({self.expected_by_chance:.2g} expected by chance: {verdict})")


def overlap(fp: DataFingerprint, keys: Sequence[str], alpha: float = DEFAULT_ALPHA) -> Overlap:
    """Test the owner's canonical keys against a module's fingerprint."""
    unique = sorted(set(keys))
    matches = sum(1 for key in unique if key in fp)
    rate = fp.false_positive_rate
    expected = rate * len(unique)
    p_value = float(binom.sf(matches - 1, len(unique), rate)) if matches else 1.0
    return Overlap(matches, len(unique), expected, matches > 0 and p_value < alpha)
