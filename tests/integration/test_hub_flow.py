"""Contribute -> approve -> compose --hub, end to end, with a real hub process and the real
client: listings, verified cards, the sha256-keyed cache, hub key pinning."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from moma.errors import ExitCode
from moma.modules.store import MODULE_FILE, load_module
from moma_client.hub.connection import observe_channels
from tests.integration.conftest import (
    FAST_COMPOSE,
    TASK,
    TASK_PATH,
    World,
    clear_module_cache,
    cli,
    module_cache,
    ok,
)
from tests.integration.hubenv import Recorder


def test_keys_init_is_private_and_never_overwrites(tmp_path: Path, client_env: Path) -> None:
    key = tmp_path / "labs" / "key.pem"
    out = ok("keys", "init", "--out", str(key))
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    info = json.loads(ok("keys", "init", "--out", str(tmp_path / "other.pem"), "--json"))
    assert len(info["key_id"]) == 16 and len(info["public_key"]) == 44
    assert "key id" in out and (tmp_path / "labs" / "key.pub.pem").is_file()
    before = key.read_bytes()
    code, _, err = cli("keys", "init", "--out", str(key))
    assert code == ExitCode.TRUST and "refusing to overwrite" in err
    assert key.read_bytes() == before
    assert before.decode().startswith("-----BEGIN PRIVATE KEY-----")
    assert before.decode() not in out  # the private key is never printed


def test_listing_shows_only_approved_by_default_and_filters(world: World) -> None:
    ids = world.ids
    listed = json.loads(ok("modules", "list", *world.hub_args, "--json"))
    assert {m["module_id"] for m in listed} == {ids[r] for r in ("base", "lab_a", "lab_b",
                                                                   "same_task")}
    assert {m["state"] for m in listed} == {"approved"}
    labs = {m["module_id"]: m["lab_name"] for m in listed}
    assert labs[ids["lab_a"]] == "lab-a" and labs[ids["lab_b"]] == "lab-b"
    pending = json.loads(ok("modules", "list", *world.hub_args, "--state", "pending", "--json"))
    # other tests of the session (test_transfer) may add pending uploads of their own
    assert ids["pending"] in {m["module_id"] for m in pending}
    assert {m["state"] for m in pending} == {"pending"}
    assert not {m["module_id"] for m in pending} & {m["module_id"] for m in listed}
    by_task = json.loads(ok("modules", "list", *world.hub_args, "--task",
                            "jarvis_2d_dielectric_tbmbj", "--json"))
    assert [m["module_id"] for m in by_task] == [ids["lab_b"]]
    assert not json.loads(ok("modules", "list", *world.hub_args, "--kind", "adapter", "--json"))
    by_base = json.loads(ok("modules", "list", *world.hub_args, "--base", ids["base"],
                            "--backbone", "cgcnn", "--json"))
    assert {m["module_id"] for m in by_base} == {ids[r] for r in ("base", "lab_a", "lab_b",
                                                                    "same_task")}
    # the local form of `modules list FOLDER` still works
    assert "mp_eform" in ok("modules", "list", str(world.root / "moe18"))


def test_show_verifies_signatures_and_pull_refuses_unapproved(world: World) -> None:
    shown = json.loads(ok("modules", "show", world.ids["lab_a"], *world.hub_args, "--json"))
    assert shown["verified"]["contributor_signature"] is True
    assert shown["verified"]["hub_countersignature"] is True
    assert shown["card"]["contributor_key_id"] == shown["module"]["contributor_key_id"]
    assert shown["card"]["base_sha256"] == world.ids["base"]
    pending = json.loads(ok("modules", "show", world.ids["pending"], *world.hub_args, "--json"))
    assert pending["module"]["state"] == "pending"
    assert pending["verified"]["hub_countersignature"] is False
    code, _, err = cli("modules", "pull", world.ids["pending"], *world.hub_args)
    assert code == ExitCode.TRUST and "not approved" in err
    assert not (module_cache() / world.ids["pending"]).exists()
    code, _, err = cli("modules", "pull", "f" * 64, *world.hub_args)
    assert code == ExitCode.NOT_FOUND and "NOT_FOUND" in err


def test_compose_over_the_hub_end_to_end(world: World, tmp_path: Path) -> None:
    """Approved, compatible, other-task candidates are verified, cached and composed locally;
    a second compose downloads nothing."""
    clear_module_cache()
    out = tmp_path / "first"
    code, stdout, err = cli("compose", "--data", TASK_PATH, *world.hub_args, "--out", str(out),
                            *FAST_COMPOSE, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    used = {c["module_id"] for c in report["candidates"]}
    assert used == {world.ids["base"], world.ids["lab_a"], world.ids["lab_b"]}
    assert not any(c["task"].split(":")[0] == TASK for c in report["candidates"])
    assert "3 downloaded" in " ".join(err.split())
    weights = np.array([c["weight"] for c in report["candidates"]])
    assert np.all(weights >= -1e-9) and abs(weights.sum() - 1) < 1e-6
    assert report["merge"] in ("average", "top1")  # one shared base: the contributed mp_eform
    assert np.isfinite(report["metrics"]["test_mae"])
    composed = load_module(out / "module")
    assert {p["module_id"] for p in composed.card.parents} <= used
    assert composed.card.base_sha256 in used
    for module_id in used:  # the cache: verified folders named by sha256, with provenance
        folder = module_cache() / module_id
        data = (folder / MODULE_FILE).read_bytes()
        assert hashlib.sha256(data).hexdigest() == module_id
        provenance = json.loads((folder / "provenance.json").read_text())
        assert provenance["countersignature"]["state"] == "approved"
    assert not list((module_cache() / ".partial").glob("*.part"))

    recorder = Recorder()
    with observe_channels(recorder):
        code, stdout, err = cli("compose", "--data", TASK_PATH, *world.hub_args, "--out",
                                str(tmp_path / "second"), *FAST_COMPOSE, "--json")
    assert code == 0, err
    assert "Download" not in recorder.methods()
    assert "0 downloaded" in " ".join(err.split())
    again = json.loads(stdout)
    assert {c["module_id"] for c in again["candidates"]} == used
    assert again["metrics"]["test_mae"] == pytest.approx(report["metrics"]["test_mae"], rel=1e-4)


def test_hub_key_is_pinned(world: World, client_env: Path) -> None:
    known = Path(os.environ["MOMA_KNOWN_HUBS"])
    entry = json.loads(known.read_text())["hubs"][world.hub.address]
    assert entry["public_key"] == world.hub.public_key  # trusted on first use, remembered
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    ok("modules", "list", *world.hub_args, "--hub-key", world.hub.public_key)
    other = json.loads(ok("keys", "init", "--out", str(client_env / "not-the-hub.pem"),
                          "--json"))
    code, _, err = cli("modules", "list", *world.hub_args, "--hub-key", other["public_key"])
    assert code == ExitCode.TRUST and "--hub-key" in err
    saved = known.read_text()
    try:
        tampered = json.loads(saved)
        tampered["hubs"][world.hub.address]["public_key"] = other["public_key"]
        known.write_text(json.dumps(tampered))
        code, _, err = cli("compose", "--data", TASK_PATH, *world.hub_args, "--out",
                           str(client_env / "never"), *FAST_COMPOSE)
        assert code == ExitCode.TRUST and "pins" in err and str(known) in err
        assert not (client_env / "never" / "report.json").exists()
    finally:
        known.write_text(saved)


def test_cache_heals_altered_copies_and_resumes_partial_downloads(world: World) -> None:
    module_id = world.ids["lab_b"]
    data = (world.modules["lab_b"] / MODULE_FILE).read_bytes()
    ok("modules", "pull", module_id, *world.hub_args)
    cached = module_cache() / module_id / MODULE_FILE
    altered = bytearray(cached.read_bytes())
    altered[-5] ^= 0xFF
    cached.write_bytes(bytes(altered))
    pulled = json.loads(ok("modules", "pull", module_id, *world.hub_args, "--json"))[0]
    assert pulled["downloaded_bytes"] == len(data) and cached.read_bytes() == data

    clear_module_cache()
    part = module_cache() / ".partial" / f"{module_id}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:100_000])
    pulled = json.loads(ok("modules", "pull", module_id, *world.hub_args, "--json"))[0]
    assert pulled["downloaded_bytes"] == len(data) - 100_000
    assert cached.read_bytes() == data and not part.exists()

    clear_module_cache()
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 100_000)  # a partial that is not the module's prefix
    code, _, err = cli("modules", "pull", module_id, *world.hub_args)
    assert code == ExitCode.TRUST and "hash to" in err
    assert not (module_cache() / module_id).exists() and not part.exists()
    ok("modules", "pull", module_id, *world.hub_args)
    assert cached.read_bytes() == data


def test_id_prefixes_resolve_and_pull_copies_to_a_folder(world: World, tmp_path: Path) -> None:
    """A unique prefix stands for the module (and the CLI says which); too short, unknown or
    ambiguous prefixes are one-line errors; ``pull --out`` leaves a usable module folder; the
    listing shows each module's metrics, training-set size and unit."""
    full = world.ids["lab_a"]
    code, stdout, err = cli("modules", "show", full[:10], *world.hub_args, "--json")
    assert code == 0 and json.loads(stdout)["module"]["module_id"] == full
    assert f"{full[:10]} is module {full}" in " ".join(err.split())
    out = tmp_path / "pulled"
    pulled = json.loads(ok("modules", "pull", full[:10], *world.hub_args, "--out", str(out),
                           "--json"))
    copied = load_module(Path(pulled[0]["path"]))
    assert copied.module_id == full and Path(pulled[0]["path"]).parent == out
    unknown = next(p for p in ("0" * 10, "1" * 10, "2" * 10)
                   if not any(i.startswith(p) for i in world.ids.values()))
    for bad, why in (("abc", "prefix of at least 6"), (unknown, "no approved")):
        code, _, err = cli("modules", "pull", bad, *world.hub_args)
        assert code != 0 and why in " ".join(err.split())
    listed = json.loads(ok("modules", "list", *world.hub_args, "--json"))
    entry = next(m for m in listed if m["module_id"] == full)
    card = load_module(Path(pulled[0]["path"])).card
    assert entry["val_mae"] == pytest.approx(card.metrics["val_mae"])
    assert entry["n_train"] == card.dataset_size["train"]
    text = ok("modules", "list", *world.hub_args)
    assert "val MAE" in text and full[:12] in text
