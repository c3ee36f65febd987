"""`fleet docs`: documentation pages generated from the repository's own files."""

from __future__ import annotations

from pathlib import Path

import click

from fleet.baselines.store import load_baseline
from fleet.cli._common import existing_dir
from fleet.errors import ConfigError
from fleet.report.baselines_page import render_baselines_doc


@click.group()
def docs() -> None:
    """Generate documentation pages from the repository's files."""


def baselines_page(baselines_dir: Path) -> str:
    existing_dir(baselines_dir, option="--baselines", what="baselines")
    files = sorted(baselines_dir.glob("*/*.json"))
    return render_baselines_doc([(path.relative_to(baselines_dir.parent).as_posix(), load_baseline(path))
                                 for path in files])


@docs.command("baselines")
@click.option("--baselines", "baselines_dir", type=click.Path(path_type=Path), default=Path("baselines"),
              show_default=True, help="Root of the baseline files: <hardware>/<variant>__<model>.json.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("docs/baselines.md"), show_default=True,
              help="Where the page is written ('-': stdout).")
@click.option("--check", is_flag=True, help="Write nothing; exit 2 if --out differs from the baselines.")
def baselines_cmd(baselines_dir: Path, out: Path, check: bool) -> None:
    """docs/baselines.md: expected values and ranges per variant and hardware pool."""
    page = baselines_page(baselines_dir)
    if str(out) == "-":
        if check:
            raise ConfigError("--check compares the page with a file; stdout is not one", where="--out -",
                              fix="pass --check with --out FILE (default docs/baselines.md), or drop --check")
        click.echo(page, nl=False)
        return
    if check:
        current = out.read_text(encoding="utf-8") if out.is_file() else ""
        if current != page:
            raise ConfigError(f"{out} is out of date with {baselines_dir}/", where=str(out),
                              fix="run `fleet docs baselines` and commit the page")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    click.echo(f"wrote {out}")
