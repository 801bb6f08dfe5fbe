"""One prediction run as a table: every uncertainty column, and what must be said about it.

:meth:`moma.api.predict.Model.predict_table` fills it; ``moma-client predict`` prints it (text,
JSON, CSV) and :meth:`Model.predict` returns it as a pandas DataFrame. Columns: ``id``,
``prediction`` (after the physical-range policy), ``unit``, ``lower``/``upper`` (the conformal
interval), ``true_value`` (where the input had one), ``ensemble_spread``
(ensembles), ``domain_score``/``in_domain`` (where the model has a domain file),
``outside_physical_range`` and ``raw_prediction`` (the value before clipping).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from moma.modules.card import ModuleCard
from moma.uncertainty.calibration import Annotated, Calibration

COLUMNS = ("id", "prediction", "unit", "lower", "upper", "true_value", "ensemble_spread",
           "domain_score", "in_domain", "outside_physical_range", "raw_prediction")


@dataclass
class PredictionTable:
    """Rows of one prediction run, plus the sentences the output must carry."""

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
        return None if rng is None else self.annotated.range_outcome.sentence(rng)

    def outside_domain(self) -> int:
        inside = self.annotated.in_domain
        return 0 if inside is None else int((~inside).sum())

    def summary(self) -> dict[str, Any]:
        """What a JSON answer states besides the rows."""
        conformal = self.calibration.conformal
        domain = self.calibration.domain
        return {"interval_coverage": conformal.coverage if conformal else None,
                "interval_half_width": conformal.half_width if conformal else None,
                "physical_range": self.range_sentence(),
                "domain_threshold": domain.threshold if domain else None,
                "outside_domain": self.outside_domain()}

    def to_dataframe(self) -> Any:
        """A pandas DataFrame with the columns of :data:`COLUMNS` that this run has."""
        import pandas as pd

        rows = self.rows()
        present = [c for c in COLUMNS if any(c in r for r in rows)] or ["id", "prediction"]
        frame = pd.DataFrame(rows, columns=present)
        frame.attrs.update(self.summary())
        return frame
