"""What travels between coordinator and labs, and what a lab accepts back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moma.backbones.registry import get_backbone
from moma.errors import IncompatibleModulesError
from moma.modules.store import module_schema
from moma.training.modeling import initial_model, module_state
from moma_client.federation.lab.setup import LabData, LabSetup
from moma_client.federation.lab.training import build_model
from moma_client.federation.protocol import RunSpec
from moma_client.federation.wire import to_wire, wire_schema


def test_wire_schema_is_the_module_schema_without_batch_counters() -> None:
    backbone = get_backbone("cgcnn")
    full = module_schema(backbone, "full")
    wire = wire_schema(backbone, "full")
    counters = [k for k in full if k.endswith("num_batches_tracked")]
    assert counters and set(wire) == set(full) - set(counters)
    assert all(wire[k] == full[k][0] for k in wire)
    adapter = wire_schema(backbone, "adapter")  # adapters and head only: no BatchNorm counters
    assert adapter and set(adapter) == set(module_schema(backbone, "adapter"))
    assert len(adapter) < len(wire)


def test_to_wire_sends_the_trainable_tensors_as_float32() -> None:
    backbone = get_backbone("cgcnn")
    state = module_state(initial_model(backbone, "full", None, seed=0).model, "full")
    wire = to_wire(state)
    assert set(wire) == set(wire_schema(backbone, "full"))
    assert all(t.dtype == torch.float32 for t in wire.values())
    assert all(torch.equal(wire[k], state[k].float()) for k in wire)


def _lab(tmp_path: Path) -> LabData:
    setup = LabSetup.from_node_config({"data": str(tmp_path / "d.json"),
                                       "key": str(tmp_path / "k.pem")})
    return LabData(setup, get_backbone("cgcnn"), prepared=None, base_sha256="")  # type: ignore[arg-type]


def test_a_lab_refuses_tensors_that_do_not_fit_or_are_not_finite(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    spec = RunSpec(task="t", property="p", unit="u", out=str(tmp_path))
    backbone = lab.backbone
    good = to_wire(module_state(initial_model(backbone, "full", None, seed=0).model, "full"))
    model = build_model(lab, spec, good)
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in good.items())
    key = sorted(good)[0]
    with pytest.raises(IncompatibleModulesError, match="missing"):
        build_model(lab, spec, {k: v for k, v in good.items() if k != key})
    with pytest.raises(IncompatibleModulesError, match="shape"):
        build_model(lab, spec, {**good, key: torch.zeros(3)})
    with pytest.raises(IncompatibleModulesError, match="NaN"):
        build_model(lab, spec, {**good, key: torch.full_like(good[key], np.nan)})
