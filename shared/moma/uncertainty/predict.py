"""Predictions of a module or composed model with every uncertainty column.

This is what ``moma-client predict`` (and a notebook) calls: it loads the model's parts, their
calibration from the card and the domain file beside the model, predicts, and returns one row
per structure: prediction (after the physical-range policy), the conformal interval, the
ensemble spread (ensembles), the applicability-domain score and flag, the range flag, and the
true value where the input had one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moma.backbones.registry import get_backbone
from moma.data.predict_inputs import PredictInput
from moma.errors import DataError
from moma.graphs.cache import featurize
from moma.modules.card import ModuleCard
from moma.modules.ensemble import load_weighted_modules
from moma.training.loop import embed_graphs, predict_standardized, resolve_device
from moma.training.modeling import model_from_module
from moma.uncertainty.calibration import Annotated, Calibration, annotate


@dataclass
class Predictions:
    """Rows of one prediction run, plus what the output must say about them."""

    card: ModuleCard
    module_ids: list[str]
    ids: list[str]
    true_values: list[float | None]
    annotated: Annotated
    calibration: Calibration

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for ident, truth, row in zip(self.ids, self.true_values, self.annotated.rows(),
                                     strict=True):
            full = {"id": ident, **row, "unit": self.card.unit}
            if truth is not None:
                full["true_value"] = truth
            rows.append(full)
        return rows

    def range_sentence(self) -> str | None:
        rng = self.calibration.physical_range
        if rng is None:
            return None
        return self.annotated.range_outcome.sentence(rng)

    def to_dataframe(self) -> Any:
        """A pandas DataFrame of :meth:`rows` (pandas is imported only here)."""
        import pandas as pd

        return pd.DataFrame(self.rows())


def predict_structures(module: Path, inputs: Sequence[PredictInput], *,
                       base_dirs: Sequence[Path] = (), device: str = "cpu") -> Predictions:
    """Predict every input with the module (or composed ensemble) folder ``module``."""
    parts = load_weighted_modules(module)
    card = parts[0][0].card
    backbone = get_backbone(card.backbone)
    featurized = featurize(backbone.featurizer(), [(p.id, p.structure) for p in inputs],
                           cache=False)
    if featurized.rejected:
        first = featurized.rejected[0]
        raise DataError(f"{first.id}: {first.reason} (in the input files)")
    calibration = Calibration.from_card_extra(card.extra, Path(module))
    torch_device = resolve_device(device)
    predictions, weights, embeddings = [], [], None
    lead = int(np.argmax([w for _, w in parts]))
    for i, (loaded, weight) in enumerate(parts):
        model = model_from_module(backbone, loaded, list(base_dirs)).to(torch_device)
        z = predict_standardized(backbone, model, featurized.graphs, device=device)
        predictions.append(loaded.card.normalizer.denormalize(z))
        weights.append(weight)
        if i == lead and calibration.domain is not None:
            embeddings = embed_graphs(backbone, model, featurized.graphs, device=device)
    annotated = annotate(calibration, predictions, weights, embeddings)
    truths = {p.id: p.true_value for p in inputs}
    return Predictions(card, [m.module_id for m, _ in parts], list(featurized.ids),
                       [truths.get(i) for i in featurized.ids], annotated, calibration)
