"""``moma-client predict``: predict a property with a module, in target units."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moma_client.cli.common import out, print_json


def predict(
    files: Annotated[list[Path], typer.Argument(help="Structure files: CIF, POSCAR or JSON.")],
    module: Annotated[Path, typer.Option(help="Module folder (module.safetensors + card.json), or a composed ensemble folder.")],
    base_dir: Annotated[list[Path] | None, typer.Option(help="Folders to search for an adapter module's base.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    json_output: Annotated[bool, typer.Option("--json", help="Print predictions as JSON.")] = False,
) -> None:
    """Predict each structure's property with MODULE (target units from its card)."""
    from moma.api.predict import load
    from moma.data.structure_files import read_structures

    model = load(module, base_dirs=base_dir or [], device=device)
    table = model.predict(dict(read_structures(files)))
    card = model.card
    rows = [{"id": str(i), "prediction": float(v)}
            for i, v in zip(table["id"], table["prediction"], strict=True)]
    if json_output:
        print_json({"module": card.name, "module_ids": model.module_ids,
                    "property": card.property, "unit": card.unit, "predictions": rows})
        return
    out.print(f"# {card.property} ({card.unit}) by {card.name}")
    for row in rows:
        out.print(f"{row['id']}\t{row['prediction']:.6g}")
