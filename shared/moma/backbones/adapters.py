"""Houlsby bottleneck adapters inserted after message-passing layers.

Houlsby et al., "Parameter-Efficient Transfer Learning for NLP" (ICML 2019): after a frozen
layer with output ``h`` (width ``d``), add

    h' = h + W_up * act(W_down * h + b_down) + b_up,      W_down: d -> d/2,  W_up: d/2 -> d

``W_up`` and ``b_up`` start at zero, so a freshly inserted adapter is the identity and the
backbone's predictions are unchanged until training moves it (near-identity initialization).

Adapters live in a ``ModuleDict`` named ``adapters`` on the backbone model and act through
forward hooks, so the backbone's own state-dict keys stay exactly those of its base weights and
an adapter module stores only ``adapters.*`` tensors (plus its task head).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from moma.backbones.base import AdapterSite, BackboneModel

ADAPTER_PREFIX = "adapters."


class HoulsbyAdapter(nn.Module):
    """Bottleneck adapter ``h + up(act(down(h)))`` with a zero-initialized up-projection."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or max(1, dim // 2)
        self.down = nn.Linear(dim, hidden)
        self.act = nn.SiLU()
        self.up = nn.Linear(hidden, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.up(self.act(self.down(h)))


def _apply_adapter(adapter: HoulsbyAdapter, output: Any) -> Any:
    if isinstance(output, Tensor):
        return adapter(output)
    if isinstance(output, tuple) and output and isinstance(output[0], Tensor):
        return (adapter(output[0]), *output[1:])
    raise TypeError(f"adapter site returned {type(output).__name__}; expected a tensor")


def insert_adapters(model: BackboneModel) -> list[AdapterSite]:
    """Attach one adapter per site of ``model`` (idempotent) and return the sites."""
    sites = model.adapter_sites()
    if hasattr(model, "adapters"):
        return sites
    model.adapters = nn.ModuleDict({site.name: HoulsbyAdapter(site.dim) for site in sites})
    for site in sites:
        layer = model.get_submodule(site.module)
        adapter = model.adapters[site.name]

        def hook(_module: nn.Module, _inputs: Any, output: Any,
                 adapter: nn.Module = adapter) -> Any:
            return _apply_adapter(adapter, output)  # type: ignore[arg-type]

        layer.register_forward_hook(hook)
    return sites


def has_adapters(model: nn.Module) -> bool:
    return isinstance(getattr(model, "adapters", None), nn.ModuleDict)


def freeze_for_adapter_training(model: BackboneModel) -> None:
    """Train only adapters and the head; every backbone tensor stays as loaded."""
    for name, param in model.named_parameters():
        param.requires_grad = name.startswith(ADAPTER_PREFIX) or model.is_head_key(name)


def adapter_state_keys(model: BackboneModel) -> list[str]:
    """State-dict keys an adapter module stores: the adapters and the task head."""
    return [
        key
        for key in model.state_dict()
        if key.startswith(ADAPTER_PREFIX) or model.is_head_key(key)
    ]


def count_trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = [
    "ADAPTER_PREFIX",
    "HoulsbyAdapter",
    "adapter_state_keys",
    "count_trainable",
    "freeze_for_adapter_training",
    "has_adapters",
    "insert_adapters",
]
