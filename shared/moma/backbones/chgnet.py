"""CHGNet: the pretrained Crystal Hamiltonian Graph neural Network as a MoMa backbone.

Deng et al., "CHGNet as a pretrained universal neural network potential for charge-informed
atomistic modelling", Nat. Mach. Intell. 5, 1031 (2023). The weights are CHGNet 0.3.0, shipped
inside the ``chgnet`` package (0.4.2) as a PyTorch zip checkpoint; they are read with
:mod:`moma.backbones.torch_zip_reader`, never unpickled (``CHGNet.load`` calls ``torch.load``).

The network (``chgnet.model.CHGNet``, kept whole as the ``chgnet`` submodule, so state-dict keys
are the checkpoint's with a ``chgnet.`` prefix) embeds atoms, bonds (radial Bessel basis, atom
graph cutoff 6 Å) and angles (Fourier basis over bond pairs within 3 Å), then runs 4 atom
convolutions interleaved with 3 bond and 3 angle updates, and a LayerNorm (``readout_norm``).

- **Embedding**: the mean over each crystal's atoms of the atom features after the last atom
  convolution and ``readout_norm`` (64 dims). CHGNet's own ``crystal_fea`` is the *sum* of these
  (its pretrained readout sums per-atom energies), so the mean is that sum over the atom count.
  It is computed by the message-passing part of ``CHGNet._compute`` without the energy readout
  and without forces, stress or magnetic moments: graphs carry no ``requires_grad`` positions
  or strain, so no derivative with respect to geometry is ever built.
- **Head**: CHGNet's own readout MLP (``chgnet.mlp``: 64 -> 64 -> 64 -> 64 -> 1, SiLU), applied
  to the mean embedding and re-initialized by :meth:`CHGNetModel.reset_head`. It keeps the shape
  (and, after :meth:`CHGNetBackbone.build_pretrained`, the weights) of the pretrained energy
  readout, so the pretrained model maps to a property model without new parameter names.
- **No composition model**: CHGNet adds a linear per-element reference energy (``AtomRef``) to
  its energy; that is an energy-specific offset, so the property model is built without it and
  the checkpoint's ``composition_model.*`` tensor is the one key not loaded. ``site_wise``
  (the magnetic-moment readout) stays in the network (strict loading) but is unused.
- **Adapters** sit after every ``chgnet.atom_conv_layers[i]``: ``AtomConv`` returns the updated
  atom-feature tensor (its residual is inside), so the forward hooks of
  :func:`moma.backbones.adapters.insert_adapters` transform exactly that output.

Graphs are ``CrystalGraphConverter`` outputs (cutoffs from the checkpoint's model args) stored
as numpy arrays. Batching needs the model's learnable basis expansions, so :meth:`collate`
returns a :class:`CHGNetBatch` of ``CrystalGraph`` objects and the model builds chgnet's
``BatchedGraph`` in :meth:`CHGNetModel.atom_features`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

import chgnet
import numpy as np
import torch
from chgnet.graph import CrystalGraph, CrystalGraphConverter
from chgnet.model.model import BatchedGraph, CHGNet
from pymatgen.core import Structure
from safetensors.torch import save as safetensors_save
from torch import Tensor, nn
from torch_geometric.utils import scatter

from moma.backbones.base import AdapterSite, Backbone, BackboneModel, Featurizer, Graph
from moma.backbones.torch_zip_reader import read_torch_zip
from moma.errors import DataError, ModuleFormatError

WEIGHTS_VERSION = "0.3.0"
CHECKPOINT = Path("pretrained") / "0.3.0" / "chgnet_0.3.0_e29f68s314m37.pth.tar"
MAX_ATOMIC_NUMBER = 94  # CHGNet's AtomEmbedding covers Z = 1..94
COMPOSITION_PREFIX = "composition_model."

# Every tensor attribute of a CrystalGraph, with the dtype chgnet builds it with.
GRAPH_DTYPES: dict[str, np.dtype] = {
    "atomic_number": np.dtype(np.int32),
    "atom_frac_coord": np.dtype(np.float32),
    "atom_graph": np.dtype(np.int32),
    "neighbor_image": np.dtype(np.float32),
    "directed2undirected": np.dtype(np.int32),
    "undirected2directed": np.dtype(np.int32),
    "bond_graph": np.dtype(np.int32),
    "lattice": np.dtype(np.float32),
}


def checkpoint_path() -> Path:
    """The CHGNet 0.3.0 checkpoint inside the installed ``chgnet`` package."""
    return Path(chgnet.__file__).resolve().parent / CHECKPOINT


@functools.lru_cache(maxsize=4)
def read_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The checkpoint's model ``state_dict`` and ``model_args`` (read once per process).

    ``CHGNet.from_file`` reads ``checkpoint["model"]`` and calls ``CHGNet(**model_args)`` then
    ``load_state_dict(state_dict)``; the same two entries are returned here. Callers must not
    modify the tensors (they are shared by every call).
    """
    if not path.is_file():
        raise ModuleFormatError(
            f"CHGNet checkpoint {path} not found: reinstall chgnet==0.4.2, which ships it"
        )
    raw = read_torch_zip(path)
    model = raw.get("model") if isinstance(raw, dict) else None
    if not (isinstance(model, dict) and isinstance(model.get("state_dict"), dict)
            and isinstance(model.get("model_args"), dict)):
        raise ModuleFormatError(
            f"{path}: no model.state_dict / model.model_args entries; this is not a CHGNet "
            "checkpoint written by chgnet's Trainer"
        )
    return dict(model["state_dict"]), dict(model["model_args"])


class CHGNetFeaturizer(Featurizer):
    """Structure -> CHGNet crystal graph (atom graph, bond graph, lattice) as numpy arrays."""

    name = "chgnet-crystal-graph"

    def __init__(self, atom_graph_cutoff: float, bond_graph_cutoff: float) -> None:
        self.converter = CrystalGraphConverter(
            atom_graph_cutoff=atom_graph_cutoff,
            bond_graph_cutoff=bond_graph_cutoff,
            algorithm="fast",
            on_isolated_atoms="ignore",  # checked here, to name the record and the site
        )

    @property
    def atom_graph_cutoff(self) -> float:
        return float(self.converter.atom_graph_cutoff)

    @property
    def bond_graph_cutoff(self) -> float:
        return float(self.converter.bond_graph_cutoff)

    def config(self) -> dict[str, Any]:
        return {
            "featurizer": self.name,
            "atom_graph_cutoff": self.atom_graph_cutoff,
            "bond_graph_cutoff": self.bond_graph_cutoff,
            "algorithm": self.converter.algorithm,
            "chgnet_version": chgnet.__version__,
            "weights": WEIGHTS_VERSION,
        }

    def featurize(self, structure: Structure, record_id: str) -> Graph:
        if len(structure) == 0:
            raise DataError(f"record {record_id!r}: the structure has no sites; remove it")
        if not structure.is_ordered:
            raise DataError(
                f"record {record_id!r}: the structure has partially occupied sites; CHGNet needs "
                "one element per site: order it (e.g. pymatgen OrderDisorderedStructure) or "
                "remove the record"
            )
        unknown = sorted({site.species_string for site in structure
                          if not 1 <= site.specie.Z <= MAX_ATOMIC_NUMBER})
        if unknown:
            raise DataError(
                f"record {record_id!r}: element(s) {', '.join(unknown)} are outside CHGNet's "
                f"Z = 1..{MAX_ATOMIC_NUMBER}; remove the record"
            )
        try:
            graph = self.converter(structure, graph_id=record_id)
        except (ValueError, RuntimeError) as exc:
            raise DataError(
                f"record {record_id!r}: CHGNet could not build its graph ({exc}); check the "
                "structure (overlapping atoms, units in Å) or remove the record"
            ) from exc
        bonded = np.zeros(len(structure), dtype=bool)
        bonded[graph.atom_graph.reshape(-1, 2)[:, 0].numpy()] = True
        if not bonded.all():
            site = int(np.flatnonzero(~bonded)[0])
            raise DataError(
                f"record {record_id!r}: site {site} ({structure[site].species_string}) has no "
                f"neighbour within {self.atom_graph_cutoff} Å ({int((~bonded).sum())} isolated "
                "site(s)); check the lattice and coordinates (units are Å) or remove the record"
            )
        arrays = {key: getattr(graph, key).detach().numpy().astype(dtype, copy=True)
                  for key, dtype in GRAPH_DTYPES.items()}
        arrays["bond_graph"] = arrays["bond_graph"].reshape(-1, 5)  # (0,) when no angles
        return arrays


def graph_to_crystal_graph(graph: Graph, atom_graph_cutoff: float,
                           bond_graph_cutoff: float) -> CrystalGraph:
    """Rebuild chgnet's ``CrystalGraph`` from a :data:`Graph` (positions without gradients)."""
    missing = sorted(set(GRAPH_DTYPES) - set(graph))
    if missing:
        raise DataError(
            f"CHGNet graph lacks {', '.join(missing)}: it was not made by the "
            f"{CHGNetFeaturizer.name} featurizer; rebuild the graph cache"
        )
    t = {key: torch.tensor(np.asarray(graph[key], dtype=dtype))
         for key, dtype in GRAPH_DTYPES.items()}
    return CrystalGraph(
        atomic_number=t["atomic_number"], atom_frac_coord=t["atom_frac_coord"],
        atom_graph=t["atom_graph"].reshape(-1, 2), atom_graph_cutoff=atom_graph_cutoff,
        neighbor_image=t["neighbor_image"].reshape(-1, 3),
        directed2undirected=t["directed2undirected"],
        undirected2directed=t["undirected2directed"], bond_graph=t["bond_graph"],
        bond_graph_cutoff=bond_graph_cutoff, lattice=t["lattice"],
    )


@dataclass
class CHGNetBatch:
    """A batch of ``CrystalGraph`` s; the model turns it into chgnet's ``BatchedGraph``."""

    graphs: list[CrystalGraph]

    @property
    def num_graphs(self) -> int:
        return len(self.graphs)

    @property
    def n_atoms(self) -> Tensor:
        """Atoms per crystal, shape ``(num_graphs,)``."""
        return torch.tensor([len(g.atomic_number) for g in self.graphs])

    def to(self, device: torch.device | str) -> CHGNetBatch:
        return CHGNetBatch([g.to(str(device)) for g in self.graphs])


class CHGNetModel(BackboneModel):
    """CHGNet's interaction layers with a mean-pooled embedding and an MLP head (``chgnet.mlp``)."""

    head_prefixes: ClassVar[tuple[str, ...]] = ("chgnet.mlp.",)

    def __init__(self, model_args: Mapping[str, Any]) -> None:
        super().__init__()
        args = {**model_args, "composition_model": None, "version": WEIGHTS_VERSION}
        with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its parameter count
            # mlp_out_bias=False is what CHGNet.load uses for the 0.3.0 weights.
            self.chgnet = CHGNet(**args, mlp_out_bias=False)
        self.embedding_dim = int(self.chgnet.atom_fea_dim)

    def atom_features(self, batch: CHGNetBatch) -> tuple[Tensor, Tensor]:
        """Per-atom features after the last atom conv and ``readout_norm``, and each atom's crystal.

        This is the message passing of ``CHGNet._compute`` (chgnet 0.4.2) without the readout,
        magnetic moments, forces or stress.
        """
        net = self.chgnet
        g = BatchedGraph.from_graphs(
            batch.graphs,
            bond_basis_expansion=net.bond_basis_expansion,
            angle_basis_expansion=net.angle_basis_expansion,
            compute_stress=False,
        )
        atom_feas = net.atom_embedding(g.atomic_numbers - 1)  # row 0 is hydrogen
        bond_feas = net.bond_embedding(g.bond_bases_ag)
        bond_weights_ag = net.bond_weights_ag(g.bond_bases_ag)
        bond_weights_bg = net.bond_weights_bg(g.bond_bases_bg)
        angle_feas = net.angle_embedding(g.angle_bases) if len(g.angle_bases) else None
        atom_kwargs = {"bond_weights": bond_weights_ag, "atom_graph": g.batched_atom_graph,
                       "directed2undirected": g.directed2undirected}
        for atom_layer, bond_layer, angle_layer in zip(
            net.atom_conv_layers[:-1], net.bond_conv_layers, net.angle_layers, strict=False
        ):
            atom_feas = atom_layer(atom_feas=atom_feas, bond_feas=bond_feas, **atom_kwargs)
            if angle_feas is not None and bond_layer is not None:
                bond_feas = bond_layer(atom_feas=atom_feas, bond_feas=bond_feas,
                                       bond_weights=bond_weights_bg, angle_feas=angle_feas,
                                       bond_graph=g.batched_bond_graph)
                if angle_layer is not None:
                    angle_feas = angle_layer(atom_feas=atom_feas, bond_feas=bond_feas,
                                             angle_feas=angle_feas,
                                             bond_graph=g.batched_bond_graph)
        atom_feas = net.atom_conv_layers[-1](atom_feas=atom_feas, bond_feas=bond_feas,
                                             **atom_kwargs)
        if net.readout_norm is not None:
            atom_feas = net.readout_norm(atom_feas)
        return atom_feas, g.atom_owners.long()

    def embed(self, batch: CHGNetBatch) -> Tensor:
        atom_feas, owners = self.atom_features(batch)
        return scatter(atom_feas, owners, dim=0, dim_size=batch.num_graphs, reduce="mean")

    def predict_from_embedding(self, embedding: Tensor) -> Tensor:
        return self.chgnet.mlp(embedding).squeeze(-1)

    def reset_head(self, generator: torch.Generator | None = None) -> None:
        """PyTorch's default ``nn.Linear`` init on every head layer, drawn from ``generator``."""
        for layer in self.chgnet.mlp.modules():
            if isinstance(layer, nn.Linear):
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    bound = 1.0 / math.sqrt(layer.in_features)
                    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)

    def adapter_sites(self) -> list[AdapterSite]:
        return [AdapterSite(f"atom_conv{i}", f"chgnet.atom_conv_layers.{i}", self.embedding_dim)
                for i in range(len(self.chgnet.atom_conv_layers))]


def state_sha256(state: Mapping[str, Tensor]) -> str:
    """sha256 of the safetensors serialization of ``state`` with sorted keys."""
    tensors = {key: value.detach().cpu().contiguous() for key, value in sorted(state.items())}
    return hashlib.sha256(safetensors_save(tensors)).hexdigest()


@functools.lru_cache(maxsize=4)
def _pretrained_base(path: Path) -> tuple[dict[str, Tensor], str]:
    state = {key: value.detach().clone()
             for key, value in CHGNetBackbone(path).build_pretrained().state_dict().items()}
    return state, state_sha256(state)


class CHGNetBackbone(Backbone):
    """CHGNet 0.3.0 (pretrained on MPtrj) from the ``chgnet`` package, without unpickling."""

    name = "chgnet"
    version = WEIGHTS_VERSION

    def __init__(self, checkpoint: Path | None = None) -> None:
        self.checkpoint = (checkpoint or checkpoint_path()).resolve()

    def model_args(self) -> dict[str, Any]:
        """CHGNet constructor arguments stored in the checkpoint."""
        return dict(read_checkpoint(self.checkpoint)[1])

    @cached_property
    def _featurizer(self) -> CHGNetFeaturizer:
        args = self.model_args()
        return CHGNetFeaturizer(float(args["atom_graph_cutoff"]),
                                float(args["bond_graph_cutoff"]))

    def featurizer(self) -> CHGNetFeaturizer:
        return self._featurizer

    def collate(self, graphs: Sequence[Graph]) -> CHGNetBatch:
        featurizer = self._featurizer
        return CHGNetBatch([
            graph_to_crystal_graph(g, featurizer.atom_graph_cutoff, featurizer.bond_graph_cutoff)
            for g in graphs
        ])

    def build(self) -> CHGNetModel:
        return CHGNetModel(self.model_args())

    def build_pretrained(self) -> CHGNetModel:
        """The architecture with the 0.3.0 weights (head = the pretrained energy MLP)."""
        model = self.build()
        state = {key: value for key, value in read_checkpoint(self.checkpoint)[0].items()
                 if not key.startswith(COMPOSITION_PREFIX)}
        try:
            model.chgnet.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModuleFormatError(
                f"{self.checkpoint}: weights do not fit the CHGNet architecture ({exc}); "
                "reinstall chgnet==0.4.2"
            ) from exc
        return model

    def pretrained_base(self) -> tuple[dict[str, Tensor], str]:
        """Full state of :meth:`build_pretrained` (fresh copies) and its sha256."""
        state, digest = _pretrained_base(self.checkpoint)
        return {key: value.clone() for key, value in state.items()}, digest
