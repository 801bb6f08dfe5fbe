"""The CHGNet fast path (cached frozen prefix, unused angle update skipped) changes no number."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from pymatgen.core import Structure

from moma.backbones.adapters import freeze_for_adapter_training, insert_adapters
from moma.backbones.base import Graph
from moma.backbones.chgnet.backbone import CHGNetBackbone
from moma.backbones.chgnet.model import CHGNetModel
from moma.backbones.chgnet.prefix import CACHE, PrefixCache, compute_prefix, fast_path
from moma.paths import downstream_task_path


@pytest.fixture(scope="module")
def backbone() -> CHGNetBackbone:
    return CHGNetBackbone()


@pytest.fixture(scope="module")
def graphs(backbone: CHGNetBackbone) -> list[Graph]:
    with gzip.open(downstream_task_path("jarvis_2d_eform")) as handle:
        records = json.load(handle)["records"][:12]
    featurizer = backbone.featurizer()
    return [featurizer.featurize(Structure(r["structure"]["lattice"], r["structure"]["species"],
                                           r["structure"]["frac_coords"]), r["id"])
            for r in records]


def adapted(backbone: CHGNetBackbone, seed: int) -> CHGNetModel:
    """A pretrained CHGNet with adapters that are not the identity (as after training)."""
    model = backbone.build_pretrained()
    insert_adapters(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.startswith("adapters.") or model.is_head_key(name):
                param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    return model


def test_fast_path_gives_the_same_predictions_and_gradients(backbone: CHGNetBackbone,
                                                             graphs: list[Graph]) -> None:
    CACHE.clear()
    batch = backbone.collate(graphs)
    target = torch.linspace(-1.0, 1.0, batch.num_graphs)
    results = {}
    for fast in (False, True):
        model = adapted(backbone, seed=3)
        freeze_for_adapter_training(model)
        with fast_path(fast):
            pred = model(batch)
            torch.nn.functional.l1_loss(pred, target).backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters()
                     if p.grad is not None}
        results[fast] = (pred.detach(), grads)
    slow_pred, slow_grads = results[False]
    fast_pred, fast_grads = results[True]
    assert CACHE.misses == len(graphs) and CACHE.nbytes > 0
    assert torch.allclose(slow_pred, fast_pred, atol=1e-5, rtol=1e-5)
    assert slow_grads.keys() == fast_grads.keys()
    assert any(n.startswith("adapters.atom_conv0.") for n in fast_grads)
    for name, grad in slow_grads.items():
        assert torch.allclose(grad, fast_grads[name], atol=1e-5, rtol=1e-4), name


def test_cache_is_shared_by_modules_on_one_base_and_reused(backbone: CHGNetBackbone,
                                                            graphs: list[Graph]) -> None:
    CACHE.clear()
    batch = backbone.collate(graphs[:6])
    first, second = adapted(backbone, seed=1), adapted(backbone, seed=2)
    with torch.no_grad(), fast_path(True):
        a = first.embed(batch)
        b = second.embed(batch)
        again = first.embed(backbone.collate(graphs[:6]))
    assert CACHE.misses == 6 and CACHE.hits == 12
    assert not torch.allclose(a, b)  # different adapters, same cached prefix
    assert torch.equal(a, again)
    with torch.no_grad(), fast_path(False):
        assert torch.allclose(second.embed(batch), b, atol=1e-5, rtol=1e-5)


def test_full_fine_tuning_never_uses_the_cache(backbone: CHGNetBackbone,
                                               graphs: list[Graph]) -> None:
    CACHE.clear()
    model = backbone.build_pretrained()  # no adapters: the prefix trains
    with fast_path(True):
        model(backbone.collate(graphs[:4])).sum().backward()
    assert CACHE.misses == 0 and CACHE.hits == 0
    assert model.chgnet.atom_embedding.embedding.weight.grad is not None


def test_changed_base_weights_miss_the_cache(backbone: CHGNetBackbone,
                                             graphs: list[Graph]) -> None:
    CACHE.clear()
    model = adapted(backbone, seed=0)
    batch = backbone.collate(graphs[:3])
    with torch.no_grad(), fast_path(True):
        model.embed(batch)
        model.chgnet.atom_conv_layers[0].twoBody_atom.mlp_core.layers[0].weight.mul_(1.01)
        changed = model.embed(batch)
    assert CACHE.misses == 6
    with torch.no_grad(), fast_path(False):
        assert torch.allclose(model.embed(batch), changed, atol=1e-5, rtol=1e-5)


def test_lru_budget_drops_the_oldest(backbone: CHGNetBackbone, graphs: list[Graph]) -> None:
    net = backbone.build_pretrained().chgnet
    items = [compute_prefix(net, g) for g in backbone.collate(graphs[:3]).graphs]
    cache = PrefixCache(max_bytes=items[0].nbytes + items[1].nbytes)
    for i, item in enumerate(items[:2]):
        cache.put(("w", str(i)), item)
    assert cache.get(("w", "0")) is items[0]  # 0 is now the most recently used
    cache.put(("w", "2"), items[2])
    assert cache.get(("w", "1")) is None and cache.nbytes <= cache.max_bytes


def test_pretrained_base_leaves_the_global_generator_alone() -> None:
    """The first compose of a process must start like every later one with the same seed."""
    from moma.backbones.chgnet.backbone import _pretrained_base

    _pretrained_base.cache_clear()
    torch.manual_seed(0)
    CHGNetBackbone().pretrained_base()
    after = torch.rand(4)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(4))
