"""The lab's side of a federation: its data, its key, and what it does with each message.

Everything here runs inside a lab's SuperNode (Flower starts one ClientApp process per
message). The dataset file, the graphs and the labels never leave this process: the handshake
answers with a signed statement of sizes and train-target count/mean/M2, a training round
returns only the module's trainable tensors, an evaluation round only MAEs and counts.

Node config keys (``flower-supernode --node-config``, or ``moma-client federate lab``):
``data`` (dataset file, required), ``key`` (the lab's Ed25519 private key, required),
``base`` (a full module folder: the base this lab agreed to train from; required for adapter
runs), ``base-sha256`` (pin a base by id instead), ``split`` (default ``seed0``), ``target``
(multi-target files), ``skip-invalid``, ``device``. ``fault`` exists for failure tests only:
``nan:R`` returns NaN tensors from round R on.
"""


from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moma.backbones.base import Backbone
from moma.backbones.registry import get_backbone
from moma.data.prepared import PreparedData, prepare
from moma.data.readers import load_dataset
from moma.errors import DataError
from moma.modules.store import load_module
from moma.trust.keys import load_private_key
from moma_client.federation.protocol import FederationError, RunSpec, TargetStats


@dataclass
class LabSetup:
    """A lab's node config, checked."""

    data: Path
    key: Path
    base: Path | None
    base_sha256: str
    split: str
    target: str | None
    skip_invalid: bool
    device: str
    fault: str

    @classmethod
    def from_node_config(cls, config: dict[str, Any]) -> LabSetup:
        def text(name: str, default: str = "") -> str:
            value = config.get(name, default)
            return str(value) if value is not None else default

        if not text("data"):
            raise DataError("this SuperNode has no 'data' in its node config; start it with "
                            "moma-client federate lab --data FILE")
        if not text("key"):
            raise FederationError("this SuperNode has no 'key' in its node config; create one "
                                  "with moma-client keys init and pass --key")
        return cls(
            data=Path(text("data")).expanduser(),
            key=Path(text("key")).expanduser(),
            base=Path(text("base")).expanduser() if text("base") else None,
            base_sha256=text("base-sha256"),
            split=text("split", "seed0"),
            target=text("target") or None,
            skip_invalid=str(config.get("skip-invalid", "false")).lower() in ("1", "true"),
            device=text("device", "cpu"),
            fault=text("fault"),
        )

    def fault_round(self, kind: str) -> int | None:
        """The round from which the test-only fault ``kind`` applies, or None."""
        if not self.fault.startswith(kind + ":"):
            return None
        return int(self.fault.split(":", 1)[1])


@dataclass
class LabData:
    """The lab's prepared dataset (graphs cached on disk by :func:`prepare`)."""

    setup: LabSetup
    backbone: Backbone
    prepared: PreparedData
    base_sha256: str

    @property
    def prop(self) -> str:
        return self.prepared.dataset.target

    @property
    def unit(self) -> str:
        return self.prepared.dataset.unit

    def sizes(self) -> dict[str, int]:
        return {part: len(self.prepared.split.get(part, [])) for part in ("train", "val", "test")}

    def train_stats(self) -> TargetStats:
        return TargetStats.of(self.prepared.part("train")[1])


def open_lab(node_config: dict[str, Any], spec: RunSpec) -> LabData:
    """Load and featurize the lab's data for ``spec``'s backbone and split."""
    setup = LabSetup.from_node_config(node_config)
    backbone = get_backbone(spec.backbone)
    dataset = load_dataset(setup.data, target=setup.target, skip_invalid=setup.skip_invalid)
    prepared = prepare(dataset, backbone, setup.split, seed=spec.seed,
                       skip_invalid=setup.skip_invalid)
    base = setup.base_sha256
    if setup.base is not None:
        base = load_module(setup.base).module_id
    return LabData(setup, backbone, prepared, base)


def check_spec(lab: LabData, spec: RunSpec) -> None:
    """Refuse to train for a run whose property, unit or base differs from the lab's."""
    if lab.prop != spec.property or lab.unit != spec.unit:
        raise DataError(
            f"{lab.setup.data}: this lab's data is {lab.prop!r} in {lab.unit!r} but the run "
            f"declares {spec.property!r} in {spec.unit!r}; join a run for this property")


def lab_private_key(lab: LabData) -> Any:
    return load_private_key(lab.setup.key)
