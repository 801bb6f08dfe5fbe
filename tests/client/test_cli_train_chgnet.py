"""CHGNet modules through ``moma-client train`` (small subsets; full tasks run in benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from moma.backbones.chgnet.backbone import CHGNetBackbone
from moma.modules.store import load_module
from moma.paths import downstream_task_path
from moma_client.cli.app import main

TASK = str(downstream_task_path("jarvis_2d_eform"))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0), capsys.readouterr().out


@pytest.mark.parametrize("kind", ["full", "adapter"])
def test_chgnet_modules_train_and_reload(kind: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / kind
    code, stdout = run(["train", "--data", TASK, "--backbone", "chgnet", "--kind", kind,
                        "--epochs", "2", "--max-train", "48", "--lr", "1e-3", "--out", str(out),
                        "--json"], capsys)
    assert code == 0
    card = json.loads(stdout)
    backbone = CHGNetBackbone()
    base_state, base_sha = backbone.pretrained_base()  # type: ignore[misc]
    assert card["base_sha256"] == base_sha and card["backbone"] == "chgnet"
    assert card["metrics"]["test_mae"] < card["metrics"]["test_mae_train_mean"] * 1.5
    state = load_module(out).state
    if kind == "adapter":
        assert all(k.startswith(("adapters.", "chgnet.mlp.")) for k in state)
        assert any(k.startswith("adapters.") for k in state)
    else:
        changed = [k for k in base_state if not k.startswith("chgnet.mlp.")
                   and not torch.equal(base_state[k], state[k])]
        assert changed, "full fine-tuning moved no backbone tensor"
