"""``moma-client predict``: predict a property with a module, in target units, with its
uncertainty (interval, ensemble spread, applicability domain) and range flags."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Annotated

import typer

from moma.safe_text import for_markup
from moma_client.cli.common import out, print_json


def predict(
    files: Annotated[list[Path], typer.Argument(help="Structure files: CIF, POSCAR, JSON or extxyz.")],
    module: Annotated[Path, typer.Option(help="Module folder (module.safetensors + card.json), or a composed ensemble folder.")],
    base_dir: Annotated[list[Path] | None, typer.Option(help="Folders to search for an adapter module's base.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    target: Annotated[str, typer.Option(help="Name of the true value in extxyz info / JSON records, shown beside the prediction.")] = "target",
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Also write the rows to this CSV file.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print predictions as JSON.")] = False,
) -> None:
    """Predict each structure's property with MODULE (target units from its card)."""
    from moma.api.predict import load
    from moma.atomic_io import write_bytes
    from moma.uncertainty.table import COLUMNS

    model = load(module, base_dirs=base_dir or [], device=device)
    result = model.predict_table(files, target)
    rows = result.rows()
    card = result.card
    if csv_path is not None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_bytes(csv_path, buffer.getvalue().encode("utf-8"))
    sentence = result.range_sentence()
    conformal = result.calibration.conformal
    if json_output:
        print_json({"module": card.name, "module_ids": result.module_ids,
                    "property": card.property, "unit": card.unit, "predictions": rows,
                    **result.summary()})
        return
    level = f"{conformal.coverage:.0%} interval" if conformal else "no interval (old card)"
    out.print(f"# {for_markup(card.property)} ({for_markup(card.unit)}) by "
              f"{for_markup(card.name)}; {level}")
    header = ["id", "prediction", "interval"]
    header += ["true"] if any("true_value" in r for r in rows) else []
    header += ["spread"] if any("ensemble_spread" in r for r in rows) else []
    header += ["domain"] if any("domain_score" in r for r in rows) else []
    out.print("\t".join(header))
    for row in rows:
        cells = [for_markup(str(row["id"])), f"{row['prediction']:.6g}",
                 f"[{row['lower']:.4g}, {row['upper']:.4g}]" if "lower" in row else "-"]
        if "true" in header:
            cells.append(f"{row['true_value']:.6g}" if "true_value" in row else "-")
        if "spread" in header:
            cells.append(f"{row.get('ensemble_spread', 0.0):.3g}")
        if "domain" in header:
            cells.append(f"{row['domain_score']:.3g}"
                         + ("" if row["in_domain"] else " OUTSIDE DOMAIN"))
        if row["outside_physical_range"]:
            cells.append(f"(raw {row.get('raw_prediction', row['prediction']):.4g}: "
                         "outside the physical range)")
        out.print("\t".join(cells))
    if sentence:
        out.print(f"# {for_markup(sentence)}")
    outside = result.outside_domain()
    if outside:
        out.print(f"# {outside} of {len(rows)} structures are outside the model's applicability "
                  "domain (farther from its training data than 95 % of its validation "
                  "structures): treat their predictions as extrapolations")
    if csv_path is not None:
        out.print(f"# rows written to {csv_path}")
