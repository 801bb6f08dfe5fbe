"""``moma-client modules``: import, list and show local modules."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moma.modules.moe18 import import_moe18
from moma.modules.store import list_modules, load_card
from moma.paths import moe18_dir
from moma.safe_text import for_markup
from moma_client.cli.common import out, print_json

modules_app = typer.Typer(help="Local modules: import the MoE-(18) CGCNNs, list, show.",
                          no_args_is_help=True)


@modules_app.command("import-moe18")
def import_moe18_command(
    src: Annotated[Path | None, typer.Argument(help="The moe18-cgcnn folder (default: $MOMA_SHARED/modules/moe18-cgcnn).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder that receives one module folder per task.")] = Path("modules/moe18"),
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Turn the 18 pretrained CGCNN models into verified modules with cards."""
    cards = import_moe18(src or moe18_dir(), out_dir)
    if json_output:
        print_json([c.to_json() for c in cards])
        return
    for card in cards:
        out.print(f"{for_markup(card.name):24s} {card.module_id[:12]}  "
                  f"{for_markup(card.property)} ({for_markup(card.unit)})")
    out.print(f"{len(cards)} modules imported into {out_dir}")


@modules_app.command("list")
def list_command(
    folder: Annotated[Path, typer.Argument(help="Folder with module folders.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List the modules below FOLDER."""
    found = list_modules(folder)
    if json_output:
        print_json([{"path": str(p), **c.to_json()} for p, c in found])
        return
    for path, card in found:
        out.print(f"{for_markup(card.name):32s} {for_markup(card.kind):8s} "
                  f"{for_markup(card.backbone):7s} {for_markup(card.module_id[:12])}  "
                  f"{for_markup(path)}")


@modules_app.command("show")
def show_command(
    module: Annotated[Path, typer.Argument(help="Module folder.")],
    json_output: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a module's card."""
    card = load_card(module)
    if json_output:
        print_json(card.to_json())
        return
    for key, value in card.to_json().items():
        out.print(f"{key}: {for_markup(value)}")
