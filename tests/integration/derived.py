"""A hub of a few hundred modules derived cheaply from the 18 real MoE-(18) CGCNNs.

Three kinds, so that finding the useful modules is a real search:

- the 18 real modules (each trained on its own Materials Project / JARVIS target);
- *variants*: ``(1 - a) theta_i + a theta_j`` plus small noise, declared as fine-tuned from
  module i (stored first) and carrying i's task: related, not identical, behaviour;
- *distractors*: module i's message passing with a freshly drawn head (the stand-in for a
  module trained on shuffled labels: its output tracks no target).

Uploads go through the hub's real contribution path (signed manifest, StartUpload, Upload,
FinishUpload), approvals through real signed ``ApproveModule`` calls. Shared by
``tests/integration/test_preselect.py`` and ``benchmarks/preselect_hub.py``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import safetensors.torch
import torch

from moma.modules.store import list_modules, load_module
from moma.proto.hub.v1 import hub_pb2, hub_pb2_grpc
from moma.trust.keys import load_private_key, save_public_key
from tests.server.hubtest import Lab, operator_call, signed_manifest, upload

HEAD_PREFIXES = ("conv_to_fc.", "fc_out.")


@dataclass
class Derived:
    """One module to contribute: its bytes, card and what it is."""

    data: bytes
    card: dict[str, Any]
    role: str  # real | variant | distractor | degenerate | flagged

    @property
    def module_id(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _card(base_card: dict[str, Any], data: bytes, **changes: Any) -> dict[str, Any]:
    card = {**base_card, **changes}
    card["module_id"] = hashlib.sha256(data).hexdigest()
    return card


def _float(state: dict[str, torch.Tensor]) -> Iterator[str]:
    return (k for k, v in state.items() if v.is_floating_point())


def real_modules(moe_dir: Path) -> list[tuple[dict[str, torch.Tensor], dict[str, Any]]]:
    out = []
    for path, _card in list_modules(moe_dir):
        loaded = load_module(path)
        out.append((dict(loaded.state), json.loads((path / "card.json").read_text())))
    return out


def variant(a: tuple[dict[str, torch.Tensor], dict[str, Any]],
            b: tuple[dict[str, torch.Tensor], dict[str, Any]], mix: float, noise: float,
            gen: torch.Generator, name: str) -> Derived:
    sa, sb = a[0], b[0]
    state = dict(sa)
    for k in _float(sa):
        t = (1 - mix) * sa[k] + mix * sb[k]
        state[k] = (t + noise * t.std().clamp(min=1e-6) * torch.randn(t.shape, generator=gen)
                    if t.numel() > 1 else t)
    data = safetensors.torch.save({k: v.contiguous() for k, v in state.items()})
    card = _card(a[1], data, name=name, base_sha256=a[1]["module_id"])
    return Derived(data, card, "variant")


def distractor(a: tuple[dict[str, torch.Tensor], dict[str, Any]], gen: torch.Generator,
               name: str) -> Derived:
    state = dict(a[0])
    for k in _float(state):
        if k.startswith(HEAD_PREFIXES):
            t = state[k]
            scale = float(t.std()) if t.numel() > 1 else abs(float(t.flatten()[0]))
            state[k] = max(scale, 0.05) * torch.randn(t.shape, generator=gen)
    data = safetensors.torch.save({k: v.contiguous() for k, v in state.items()})
    card = _card(a[1], data, name=name, base_sha256=a[1]["module_id"], task=f"noise-{name}",
                 property="shuffled-label stand-in")
    return Derived(data, card, "distractor")


def degenerate(a: tuple[dict[str, torch.Tensor], dict[str, Any]], name: str) -> Derived:
    """A dead head: every output is the bias (refused by the hub's probe check)."""
    state = dict(a[0])
    state["fc_out.weight"] = torch.zeros_like(state["fc_out.weight"])
    data = safetensors.torch.save({k: v.contiguous() for k, v in state.items()})
    return Derived(data, _card(a[1], data, name=name, base_sha256=a[1]["module_id"]),
                   "degenerate")


def mislabelled(a: tuple[dict[str, torch.Tensor], dict[str, Any]], name: str) -> Derived:
    """Real weights with a card whose target range is far from what they predict (flagged)."""
    state = {k: v.clone() for k, v in a[0].items()}
    state["fc_out.bias"] = state["fc_out.bias"] + 1e-3  # distinct bytes
    data = safetensors.torch.save({k: v.contiguous() for k, v in state.items()})
    card = _card(a[1], data, name=name, base_sha256=a[1]["module_id"],
                 extra={"range": [50.0, 100.0]})  # a range its predictions never reach
    return Derived(data, card, "flagged")


def derive(reals: list[tuple[dict[str, torch.Tensor], dict[str, Any]]], variants: int,
           distractors: int, seed: int = 0) -> list[Derived]:
    gen = torch.Generator().manual_seed(seed)
    out: list[Derived] = []
    n = len(reals)
    for v in range(variants):
        i = v % n
        j = int(torch.randint(n, (1,), generator=gen))
        mix = float(torch.rand(1, generator=gen)) * 0.3
        out.append(variant(reals[i], reals[j], mix, 0.02, gen, f"variant-{v:05d}"))
    for d in range(distractors):
        out.append(distractor(reals[d % n], gen, f"distractor-{d:05d}"))
    return out


class Contributor:
    """A lab key enrolled on a running hub, and the operator key that approves."""

    def __init__(self, channel: grpc.Channel, hub_id: str, store: Path, lab: Lab) -> None:
        self.modules = hub_pb2_grpc.ModuleServiceStub(channel)
        self.operators = hub_pb2_grpc.OperatorServiceStub(channel)
        self.hub_id = hub_id
        self.lab = lab
        self.operator = load_private_key(store / "operator_key.pem")

    @classmethod
    def enrolled(cls, channel: grpc.Channel, hub_id: str, store: Path, name: str,
                 folder: Path) -> Contributor:
        lab = Lab.new(name)
        folder.mkdir(parents=True, exist_ok=True)
        save_public_key(folder / f"{name}.pub.pem", lab.private.public_key())
        me = cls(channel, hub_id, store, lab)
        operator_call(me.operators, me.operator, hub_id, "EnrollKey",
                      hub_pb2.EnrollKeyRequest(lab_name=name, public_key=lab.public_raw))
        return me

    def contribute(self, module: Derived, approve: bool = True) -> str:
        signed = signed_manifest(self.lab, module.data, module.card, self.hub_id)
        module_id = upload(self.modules, signed, module.data).module.module_id
        if approve:
            operator_call(self.operators, self.operator, self.hub_id, "ApproveModule",
                          hub_pb2.ApproveModuleRequest(module_id=module_id))
        return str(module_id)

    def approve(self, module_id: str) -> None:
        operator_call(self.operators, self.operator, self.hub_id, "ApproveModule",
                      hub_pb2.ApproveModuleRequest(module_id=module_id))

    def contribute_all(self, modules: list[Derived], threads: int = 2) -> list[str]:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(self.contribute, modules))

    def contribute_stream(self, makers: Iterable[Callable[[], Derived | None]],
                          threads: int = 4, done: Callable[[str], None] | None = None) -> int:
        """Make and contribute modules ``threads`` at a time, holding at most ``2 * threads``
        in memory (10,000 modules of 0.4 MB would not fit at once); returns how many were
        contributed (a maker returning None has nothing to contribute).

        Each upload is a separate real contribution (its own session, manifest and approval),
        as concurrent labs would send them; the first error stops the stream and is raised."""
        count = 0
        with ThreadPoolExecutor(threads) as pool:
            running: set[Future[str]] = set()

            def settle() -> None:
                nonlocal count
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    running.discard(future)
                    module_id = future.result()  # raises the upload's error
                    if not module_id:
                        continue
                    count += 1
                    if done is not None:
                        done(module_id)

            def one(make: Callable[[], Derived | None]) -> str:
                module = make()
                return self.contribute(module) if module is not None else ""

            for make in makers:
                running.add(pool.submit(one, make))
                if len(running) >= 2 * threads:
                    settle()
            while running:
                settle()
        return count
