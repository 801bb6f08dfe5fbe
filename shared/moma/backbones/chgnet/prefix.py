"""The frozen prefix of CHGNet, computed once per crystal and reused (the fast path).

Profiled on ``mp_eps_electronic`` (907 training crystals, adapter fine-tuning, one thread),
building chgnet's ``BatchedGraph`` (bond vectors, radial and angular bases) and running the
embeddings and the first atom convolution is about a third of every forward pass, and every
epoch, every candidate module and every strategy redoes it for the same crystals. When the
model carries adapters, all of that is frozen: the first adapter sits *after* the first atom
convolution, so the radial/angular bases and that convolution's raw output depend only on the
crystal and the base weights. They are cached here per crystal, keyed by the crystal graph's
bytes and a fingerprint of the prefix weights, and a batch is assembled by concatenating the
cached pieces with index offsets. Every number is what the batched computation gives (each
crystal's prefix only reads that crystal's atoms, bonds and angles).

Full fine-tuning trains the prefix (the radial frequencies are learnable), so it never uses the
cache. The cache is bounded (``MOMA_CHGNET_PREFIX_MB``, default 1024 MiB, least recently used
dropped first); ``MOMA_CHGNET_FAST=0`` (or :func:`set_fast_path`) turns the fast path off, which
is what ``benchmarks/bench_chgnet_speed.py`` compares against.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from chgnet.graph import CrystalGraph
from chgnet.model.model import CHGNet
from torch import Tensor, nn

_FAST = [os.environ.get("MOMA_CHGNET_FAST", "1") != "0"]


def fast_path_enabled() -> bool:
    return _FAST[0]


def set_fast_path(enabled: bool) -> None:
    """Switch the prefix cache and the skipped unused angle update on or off (process-wide)."""
    _FAST[0] = enabled


@contextmanager
def fast_path(enabled: bool) -> Iterator[None]:
    previous = _FAST[0]
    _FAST[0] = enabled
    try:
        yield
    finally:
        _FAST[0] = previous


def prefix_modules(net: CHGNet) -> list[nn.Module]:
    """The layers whose output the prefix cache stores (frozen when the model has adapters)."""
    return [net.bond_basis_expansion, net.angle_basis_expansion, net.atom_embedding,
            net.bond_embedding, net.bond_weights_ag, net.bond_weights_bg, net.angle_embedding,
            net.atom_conv_layers[0]]


@dataclass
class Prefix:
    """One crystal's frozen prefix; indices are local to the crystal."""

    atom_conv0: Tensor  # raw output of the first atom convolution (before its adapter)
    bond_bases_ag: Tensor
    bond_bases_bg: Tensor
    angle_bases: Tensor
    atom_graph: Tensor  # (directed bonds, 2)
    directed2undirected: Tensor
    bond_graph: Tensor  # (angles, 3): atom, undirected bond i, undirected bond j

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (
            self.atom_conv0, self.bond_bases_ag, self.bond_bases_bg, self.angle_bases,
            self.atom_graph, self.directed2undirected, self.bond_graph))


@dataclass
class PrefixBatch:
    """A batch assembled from cached prefixes (what ``BatchedGraph`` + first conv would give)."""

    atom_conv0: Tensor
    bond_bases_ag: Tensor
    bond_bases_bg: Tensor
    angle_bases: Tensor
    atom_graph: Tensor
    directed2undirected: Tensor
    bond_graph: Tensor
    atom_owners: Tensor


class PrefixCache:
    """Least-recently-used cache of :class:`Prefix` es under a byte budget."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, str], Prefix] = OrderedDict()

    def get(self, key: tuple[str, str]) -> Prefix | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item

    def put(self, key: tuple[str, str], item: Prefix) -> None:
        if key in self._items or item.nbytes > self.max_bytes:
            return
        self._items[key] = item
        self.nbytes += item.nbytes
        while self.nbytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.nbytes -= dropped.nbytes

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = self.hits = self.misses = 0


CACHE = PrefixCache(int(float(os.environ.get("MOMA_CHGNET_PREFIX_MB", "1024")) * 2**20))

_GRAPH_FIELDS = ("atomic_number", "atom_frac_coord", "lattice", "atom_graph", "neighbor_image",
                 "directed2undirected", "undirected2directed", "bond_graph")


def graph_key(graph: CrystalGraph) -> str:
    """Content hash of a crystal graph (ids differ between datasets; bytes do not lie)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in _GRAPH_FIELDS:
        tensor = getattr(graph, name)
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class WeightsFingerprint:
    """Hash of the prefix weights, recomputed only when a tensor was replaced or changed."""

    def __init__(self) -> None:
        self._stamp: tuple[tuple[int, int], ...] = ()
        self._value = ""

    def __call__(self, modules: Sequence[nn.Module]) -> str:
        tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
        stamp = tuple((id(t), t._version) for t in tensors)
        if stamp != self._stamp:
            digest = hashlib.blake2b(digest_size=16)
            for t in tensors:
                digest.update(t.detach().cpu().contiguous().numpy().tobytes())
            self._stamp, self._value = stamp, digest.hexdigest()
        return self._value


@torch.no_grad()
def compute_prefix(net: CHGNet, graph: CrystalGraph) -> Prefix:
    """The frozen prefix of one crystal (the first atom convolution's hooks are bypassed)."""
    from chgnet.model.model import BatchedGraph

    g = BatchedGraph.from_graphs([graph], bond_basis_expansion=net.bond_basis_expansion,
                                 angle_basis_expansion=net.angle_basis_expansion,
                                 compute_stress=False)
    atom_feas = net.atom_embedding(g.atomic_numbers - 1)
    raw = net.atom_conv_layers[0].forward(  # .forward: no adapter hook here
        atom_feas=atom_feas, bond_feas=net.bond_embedding(g.bond_bases_ag),
        bond_weights=net.bond_weights_ag(g.bond_bases_ag), atom_graph=g.batched_atom_graph,
        directed2undirected=g.directed2undirected)
    n_bg = g.batched_bond_graph
    bond_graph = (n_bg.reshape(-1, 3) if n_bg.numel()
                  else torch.zeros((0, 3), dtype=g.batched_atom_graph.dtype))
    return Prefix(raw.detach(), g.bond_bases_ag.detach(), g.bond_bases_bg.detach(),
                  g.angle_bases.detach(), g.batched_atom_graph.reshape(-1, 2),
                  g.directed2undirected, bond_graph)


def assemble(prefixes: Sequence[Prefix]) -> PrefixBatch:
    """Concatenate per-crystal prefixes with the offsets ``BatchedGraph.from_graphs`` uses."""
    atom_graph, d2u, bond_graph, owners = [], [], [], []
    n_atoms = n_undirected = 0
    for i, p in enumerate(prefixes):
        atom_graph.append(p.atom_graph + n_atoms)
        d2u.append(p.directed2undirected + n_undirected)
        if len(p.bond_graph):
            offset = torch.tensor([n_atoms, n_undirected, n_undirected],
                                  dtype=p.bond_graph.dtype, device=p.bond_graph.device)
            bond_graph.append(p.bond_graph + offset)
        owners.append(torch.full((len(p.atom_conv0),), i, dtype=torch.long,
                                 device=p.atom_conv0.device))
        n_atoms += len(p.atom_conv0)
        n_undirected += len(p.bond_bases_ag)
    angles = [p.angle_bases for p in prefixes if len(p.angle_bases)]
    return PrefixBatch(
        atom_conv0=torch.cat([p.atom_conv0 for p in prefixes]),
        bond_bases_ag=torch.cat([p.bond_bases_ag for p in prefixes]),
        bond_bases_bg=torch.cat([p.bond_bases_bg for p in prefixes]),
        angle_bases=torch.cat(angles) if angles else torch.zeros(0),
        atom_graph=torch.cat(atom_graph), directed2undirected=torch.cat(d2u),
        bond_graph=torch.cat(bond_graph) if bond_graph else torch.zeros(0),
        atom_owners=torch.cat(owners),
    )


def prefix_batch(net: CHGNet, graphs: Sequence[CrystalGraph], fingerprint: str) -> PrefixBatch:
    """The batch's prefix from the cache, computing (and caching) the crystals it lacks."""
    prefixes = []
    for graph in graphs:
        key = (fingerprint, graph_key(graph))
        item = CACHE.get(key)
        if item is None:
            item = compute_prefix(net, graph)
            CACHE.put(key, item)
        prefixes.append(item)
    return assemble(prefixes)
