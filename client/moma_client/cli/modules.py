"""``moma-client modules``, local side: import the MoE-(18) CGCNNs, list and show module folders.

The ``modules`` group itself is built once, in :mod:`moma_client.cli.app`; ``list`` and
``show`` (:mod:`moma_client.cli.hub_modules`) read a hub instead when given ``--hub``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moma.safe_text import for_markup
from moma_client.cli.common import out, print_json


def import_moe18_command(
    src: Annotated[Path | None, typer.Argument(help="The moe18-cgcnn folder (default: $MOMA_SHARED/modules/moe18-cgcnn).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder that receives one module folder per task.")] = Path("modules/moe18"),
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Turn the 18 pretrained CGCNN models into verified modules with cards."""
    from moma.modules.moe18 import import_moe18
    from moma.paths import moe18_dir

    cards = import_moe18(src or moe18_dir(), out_dir)
    if json_output:
        print_json([c.to_json() for c in cards])
        return
    for card in cards:
        out.print(f"{for_markup(card.name):24s} {card.module_id[:12]}  "
                  f"{for_markup(card.property)} ({for_markup(card.unit)})")
    out.print(f"{len(cards)} modules imported into {out_dir}")


def list_local(folder: Path, json_output: bool) -> None:
    """List the modules below FOLDER."""
    from moma.modules.store import list_modules

    found = list_modules(folder)
    if json_output:
        print_json([{"path": str(p), **c.to_json()} for p, c in found])
        return
    out.print(f"{'name':32s} {'kind':8s} {'backbone':8s} {'val MAE':>9s} {'test MAE':>9s} "
              f"{'n train':>7s}  {'unit':24s} {'id':12s}  path")
    for path, card in found:
        m = card.metrics
        out.print(f"{for_markup(card.name):32s} {card.kind:8s} {card.backbone:8s} "
                  f"{_metric(m.get('val_mae'))} {_metric(m.get('test_mae'))} "
                  f"{card.dataset_size.get('train', '-')!s:>7s}  {for_markup(card.unit or '-'):24s} "
                  f"{card.module_id[:12]}  {for_markup(path)}")


def _metric(value: float | None) -> str:
    return f"{value:9.4g}" if value is not None else f"{'-':>9s}"


def show_local(module: Path, json_output: bool) -> None:
    """Show a module's card."""
    from moma.modules.store import load_card

    card = load_card(module)
    if json_output:
        print_json(card.to_json())
        return
    for key, value in card.to_json().items():
        out.print(f"{key}: {for_markup(value)}")
