"""Load a module (or a composed ensemble) and predict, in target units, as a pandas DataFrame.

The one prediction path: ``moma-client predict`` prints what :func:`predict` returns, with
the uncertainty of every prediction (interval, ensemble spread, applicability domain, physical
range; :mod:`moma.uncertainty`). Inputs may be pymatgen ``Structure`` s, ASE ``Atoms``,
structure files (CIF, POSCAR, JSON, extxyz) or folders of them, alone or in a list; rows keep
the input order, with ids from file names (files), the ``id`` given, or the position in the
list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moma.backbones.base import Backbone, BackboneModel
from moma.backbones.registry import get_backbone
from moma.data.predict_inputs import PredictInput, read_prediction_inputs
from moma.errors import DataError
from moma.finite import require_finite_predictions
from moma.graphs.cache import featurize
from moma.modules.card import ModuleCard
from moma.modules.ensemble import load_weighted_modules
from moma.modules.loading import model_from_module
from moma.modules.store import LoadedModule
from moma.training.loop import embed_graphs, predict_standardized, resolve_device
from moma.uncertainty.calibration import Calibration, annotate
from moma.uncertainty.table import PredictionTable

if TYPE_CHECKING:
    import pandas as pd
    from pymatgen.core import Structure

Inputs = Any
"""A ``Structure``, ASE ``Atoms``, a file or folder path, or a list (or id -> item mapping) of
them."""


@dataclass
class Model:
    """A loaded module, or the weighted parts of a composed ensemble, ready to predict."""

    path: Path
    parts: list[tuple[LoadedModule, float]]
    backbone: Backbone
    base_dirs: Sequence[Path] = ()
    device: str = "cpu"
    _models: list[BackboneModel] = field(default_factory=list, repr=False)
    _calibration: Calibration | None = field(default=None, repr=False)

    @property
    def card(self) -> ModuleCard:
        """The (first part's) card: property, unit, task, metrics."""
        return self.parts[0][0].card

    @property
    def module_ids(self) -> list[str]:
        return [m.module_id for m, _ in self.parts]

    def models(self) -> list[BackboneModel]:
        """The parts as ready models (built once)."""
        if not self._models:
            device = resolve_device(self.device)
            self._models = [model_from_module(self.backbone, loaded, self.base_dirs).to(device)
                            for loaded, _ in self.parts]
        return self._models

    def calibration(self) -> Calibration:
        """Intervals, domain and range from the card (and the domain file beside the model)."""
        if self._calibration is None:
            self._calibration = Calibration.from_card_extra(self.card.extra, self.path)
        return self._calibration

    def predict(self, inputs: Inputs, target: str = "target") -> pd.DataFrame:
        """Predictions in the card's unit with their uncertainty: columns ``id``,
        ``prediction``, ``lower``, ``upper``, ``unit`` and, where they exist, ``true_value``,
        ``ensemble_spread``, ``domain_score``, ``in_domain``, ``outside_physical_range``,
        ``raw_prediction`` (:mod:`moma.uncertainty.table`)."""
        return self.predict_table(inputs, target).to_dataframe()

    def predict_table(self, inputs: Inputs, target: str = "target") -> PredictionTable:
        """The rows of :meth:`predict` with the sentences an output must carry."""
        items = inputs_of(inputs, target)
        featurized = featurize(self.backbone.featurizer(),
                               [(p.id, p.structure) for p in items], cache=False)
        if featurized.rejected:
            first = featurized.rejected[0]
            raise DataError(f"{first.id}: {first.reason} (in the input files)")
        calibration = self.calibration()
        weights = [weight for _, weight in self.parts]
        lead = int(np.argmax(weights))
        predictions, embeddings = [], None
        for i, ((loaded, _), model) in enumerate(zip(self.parts, self.models(), strict=True)):
            z = predict_standardized(self.backbone, model, featurized.graphs, device=self.device)
            values = loaded.card.normalizer.denormalize(z)
            require_finite_predictions(featurized.ids, values, f"module {loaded.card.name}")
            predictions.append(values)
            if i == lead and calibration.domain is not None:
                embeddings = embed_graphs(self.backbone, model, featurized.graphs,
                                          device=self.device)
        truths = {p.id: p.true_value for p in items}
        return PredictionTable(self.card, self.module_ids, list(featurized.ids),
                               [truths.get(i) for i in featurized.ids],
                               annotate(calibration, predictions, weights, embeddings),
                               calibration)


def load(path: str | Path, *, base_dirs: Sequence[str | Path] = (),
         device: str = "cpu") -> Model:
    """A module folder, or a composed ensemble folder, checked and ready to predict.

    ``base_dirs``: further folders where an adapter module's base may be found (the module's
    own parent folder is always searched).
    """
    parts = load_weighted_modules(Path(path))
    backbone = get_backbone(parts[0][0].card.backbone)
    return Model(Path(path), parts, backbone, [Path(d) for d in base_dirs], device)


def predict(model: Model | str | Path, inputs: Inputs, **load_options: Any) -> pd.DataFrame:
    """Predict ``inputs`` with ``model`` (a :class:`Model` or a module folder to load)."""
    loaded = model if isinstance(model, Model) else load(model, **load_options)
    return loaded.predict(inputs)


def structures_of(inputs: Inputs) -> list[tuple[str, Structure]]:
    """``(id, structure)`` for every input, in order (see the module docstring)."""
    return [(p.id, p.structure) for p in inputs_of(inputs)]


def inputs_of(inputs: Inputs, target: str = "target") -> list[PredictInput]:
    """Every input in order with its true value where a file carries one (JSON records'
    ``target``, extxyz ``info[target]``)."""
    from pymatgen.core import Structure

    if isinstance(inputs, Mapping):
        named: Iterable[tuple[str | None, Any]] = [(str(k), v) for k, v in inputs.items()]
    elif isinstance(inputs, str | Path | Structure) or _is_atoms(inputs):
        named = [(None, inputs)]
    else:
        named = [(None, item) for item in inputs]
    out: list[PredictInput] = []
    for position, (given, item) in enumerate(named):
        if isinstance(item, str | Path):
            found = read_prediction_inputs([item], target)
            if given is not None and len(found) == 1:
                found = [PredictInput(given, found[0].structure, found[0].true_value)]
            out += found
        elif isinstance(item, Structure):
            out.append(PredictInput(given or str(position), item))
        elif _is_atoms(item):
            out.append(PredictInput(given or str(position),
                                    _from_atoms(item, given or str(position))))
        else:
            raise DataError(f"input {given or position} is a {type(item).__name__}; give "
                            "pymatgen Structures, ASE Atoms, or structure files/folders")
    if not out:
        raise DataError("no structures given; pass Structures, ASE Atoms, files or a folder")
    ids = [p.id for p in out]
    if len(set(ids)) != len(ids):
        duplicate = next(sid for sid in ids if ids.count(sid) > 1)
        raise DataError(f"two inputs have the id {duplicate!r}; give distinct ids (a mapping "
                        "id -> structure) or distinct file names")
    return out


def _is_atoms(item: Any) -> bool:
    return type(item).__name__ == "Atoms" and hasattr(item, "get_chemical_symbols")


def _from_atoms(atoms: Any, name: str) -> Structure:
    from moma.data.readers import structure_from_atoms
    from moma.data.validate import RecordProblem

    try:
        return structure_from_atoms(atoms)
    except RecordProblem as exc:
        raise DataError(f"input {name}: {exc}") from None
