"""``moma-client predict``: predict a property with a module, in target units."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moma.backbones.registry import get_backbone
from moma.data.structure_files import read_structures
from moma.errors import DataError
from moma.graphs.cache import featurize
from moma.modules.store import load_module
from moma.training.loop import predict_standardized, resolve_device
from moma.training.modeling import model_from_module
from moma_client.cli.common import out, print_json


def predict(
    files: Annotated[list[Path], typer.Argument(help="Structure files: CIF, POSCAR or JSON.")],
    module: Annotated[Path, typer.Option(help="Module folder (module.safetensors + card.json).")],
    base_dir: Annotated[list[Path] | None, typer.Option(help="Folders to search for an adapter module's base.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    json_output: Annotated[bool, typer.Option("--json", help="Print predictions as JSON.")] = False,
) -> None:
    """Predict each structure's property with MODULE (target units from its card)."""
    loaded = load_module(module)
    backbone = get_backbone(loaded.card.backbone)
    structures = read_structures(files)
    featurized = featurize(backbone.featurizer(), structures, cache=False)
    if featurized.rejected:
        first = featurized.rejected[0]
        raise DataError(f"{first.reason} (in the input files)")
    model = model_from_module(backbone, loaded, base_dir or []).to(resolve_device(device))
    z = predict_standardized(backbone, model, featurized.graphs, device=device)
    values = loaded.card.normalizer.denormalize(z)
    rows = [{"id": i, "prediction": float(v)} for i, v in zip(featurized.ids, values, strict=True)]
    if json_output:
        print_json({"module": loaded.card.name, "module_id": loaded.module_id,
                    "property": loaded.card.property, "unit": loaded.card.unit,
                    "predictions": rows})
        return
    out.print(f"# {loaded.card.property} ({loaded.card.unit}) by {loaded.card.name}")
    for row in rows:
        out.print(f"{row['id']}\t{row['prediction']:.6g}")
