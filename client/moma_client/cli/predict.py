"""``moma-client predict``: predict a property with a module, in target units."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from moma.backbones.registry import get_backbone
from moma.data.structure_files import read_structures
from moma.errors import DataError
from moma.finite import require_finite_predictions
from moma.graphs.cache import featurize
from moma.modules.ensemble import load_weighted_modules
from moma.safe_text import clean, for_markup
from moma.training.loop import predict_standardized, resolve_device
from moma.training.modeling import model_from_module
from moma_client.cli.common import out, print_json


def predict(
    files: Annotated[list[Path], typer.Argument(help="Structure files: CIF, POSCAR or JSON.")],
    module: Annotated[Path, typer.Option(help="Module folder (module.safetensors + card.json), or a composed ensemble folder.")],
    base_dir: Annotated[list[Path] | None, typer.Option(help="Folders to search for an adapter module's base.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    json_output: Annotated[bool, typer.Option("--json", help="Print predictions as JSON.")] = False,
) -> None:
    """Predict each structure's property with MODULE (target units from its card)."""
    parts = load_weighted_modules(module)
    card = parts[0][0].card
    backbone = get_backbone(card.backbone)
    structures = read_structures(files)
    featurized = featurize(backbone.featurizer(), structures, cache=False)
    if featurized.rejected:
        first = featurized.rejected[0]
        raise DataError(f"{first.reason} (in the input files)")
    total = sum(weight for _, weight in parts)
    values = np.zeros(len(featurized.graphs))
    for loaded, weight in parts:
        model = model_from_module(backbone, loaded, base_dir or []).to(resolve_device(device))
        z = predict_standardized(backbone, model, featurized.graphs, device=device)
        values += (weight / total) * loaded.card.normalizer.denormalize(z)
    require_finite_predictions(featurized.ids, values, f"module {clean(module)}")
    rows = [{"id": i, "prediction": float(v)} for i, v in zip(featurized.ids, values, strict=True)]
    if json_output:
        print_json({"module": card.name, "module_ids": [m.module_id for m, _ in parts],
                    "property": card.property, "unit": card.unit, "predictions": rows})
        return
    out.print(f"# {for_markup(card.property)} ({for_markup(card.unit)}) by "
              f"{for_markup(card.name)}")
    for row in rows:
        out.print(f"{for_markup(row['id'])}\t{row['prediction']:.6g}")
