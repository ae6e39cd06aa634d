"""``audit data ...``: inspect, check, split and generate cohorts.

Library code raises :class:`~audit.core.errors.UserError` for bad input; the main CLI turns it
into ``error: ...`` and exit 2. ``validate`` exits 1 when it finds problems (it is a check,
the input itself was fine to read).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from audit.core.errors import UserError

app = typer.Typer(
    help=(
        "Cohorts: describe, validate and split ACDC / M&Ms datasets; write the built-in phantom.\n\n"
        "Example:  audit data describe /data/ACDC"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)


def _dir(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"{path}: no such directory")
    if not path.is_dir():
        raise UserError(f"{path}: not a directory")
    return path


def _fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else f"{v:.{nd}f}"


@app.command("describe")
def describe_cmd(
    directory: Path = typer.Argument(..., help="Dataset directory (ACDC or M&Ms layout, detected)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Force the layout: acdc | mnms."),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
) -> None:
    """Subjects per vendor x group, spacing range, frames, slices and EF distribution.

    \b
    Examples:
      audit data describe /data/ACDC
      audit data describe /data/MnM --json
    """
    from rich.console import Console  # lazy: rich only for console tables
    from rich.table import Table  # lazy: rich only for console tables

    from cohorts.describe import describe  # lazy: keeps `audit --help` fast (pulls in the data stack)

    d = describe(_dir(directory), layout=layout)
    if as_json:
        typer.echo(json.dumps(d.to_dict(), indent=2))
        return
    console = Console(width=120)
    console.print(f"[bold]{d.name}[/bold]  layout={d.layout}  subjects={d.n_subjects}  data_hash={d.data_hash[:16]}")
    groups = sorted({g for c in d.counts.values() for g in c})
    t = Table(title="subjects per vendor x group")
    t.add_column("vendor")
    for g in groups:
        t.add_column(g, justify="right")
    t.add_column("total", justify="right")
    for vendor, c in d.counts.items():
        t.add_row(vendor, *[str(c.get(g, 0)) for g in groups], str(sum(c.values())))
    t.add_row("total", *[str(sum(c.get(g, 0) for c in d.counts.values())) for g in groups], str(d.n_subjects))
    console.print(t)
    g = Table(title="geometry and annotation", show_header=False)
    g.add_row("in-plane spacing (mm)", f"{d.spacing_inplane_mm[0]:.2f} - {d.spacing_inplane_mm[1]:.2f}")
    g.add_row("slice spacing (mm)", f"{d.spacing_slice_mm[0]:.2f} - {d.spacing_slice_mm[1]:.2f}")
    g.add_row("frames", f"{d.frames[0]} - {d.frames[1]}")
    g.add_row("slices", f"{d.slices[0]} - {d.slices[1]}")
    g.add_row("matrix (H x W)", ", ".join(d.matrix))
    g.add_row("subjects with masks", str(d.n_with_masks))
    g.add_row("labelled frames", str(d.n_labelled_frames))
    console.print(g)
    e = Table(title="LV from masks (ED and ES labelled)")
    for col in ("", "n", "mean", "sd", "min", "median", "max"):
        e.add_column(col, justify="right")
    for label, dist in (("EF (%)", d.ef), ("EDV (mL)", d.edv_ml)):
        e.add_row(label, str(dist["n"]), *[_fmt(dist[k]) for k in ("mean", "sd", "min", "median", "max")])
    console.print(e)


@app.command("validate")
def validate_cmd(
    directory: Path = typer.Argument(..., help="Dataset directory (ACDC or M&Ms layout, detected)."),
    layout: Optional[str] = typer.Option(None, "--layout", help="Force the layout: acdc | mnms."),
) -> None:
    """Check a dataset and list every problem (exit 1 if there is any).

    \b
    Example:
      audit data validate /data/ACDC
    """
    from cohorts.validate import validate  # lazy: keeps `audit --help` fast (pulls in the data stack)

    problems = validate(_dir(directory), layout=layout)
    if not problems:
        typer.echo(f"{directory}: OK")
        return
    for p in problems:
        typer.echo(str(p))
    typer.echo(f"{len(problems)} problem(s) in {directory}", err=True)
    raise typer.Exit(1)


@app.command("split")
def split_cmd(
    directory: Path = typer.Argument(..., help="Dataset directory (ACDC or M&Ms layout, detected)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the split JSON."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    fractions: str = typer.Option("0.4,0.2,0.2,0.2", "--fractions", help="train,holdout,reference,test fractions."),
    lovo: bool = typer.Option(False, "--lovo", help="Leave one vendor out (its subjects go to unseen_vendor_test)."),
    vendor: Optional[str] = typer.Option(None, "--vendor", help="The held-out vendor for --lovo (default: last alphabetically)."),
) -> None:
    """Write deterministic subject-level splits (stratified by vendor x group) with the data hash.

    \b
    Examples:
      audit data split /data/ACDC --out splits.json --seed 0
      audit data split /data/MnM --out lovo.json --lovo --vendor D
    """
    from cohorts.hashing import data_hash  # lazy: keeps `audit --help` fast (pulls in the data stack)
    from cohorts.loaders import scan_dataset  # lazy: keeps `audit --help` fast (pulls in the data stack)
    from cohorts.splits import (  # lazy: keeps `audit --help` fast (pulls in the data stack)
        SPLIT_NAMES,
        make_lovo_splits,
        make_splits,
        save_splits,
    )
    from cohorts.types import Cohort, Subject  # lazy: keeps `audit --help` fast (pulls in the data stack)

    try:
        parts = [float(x) for x in fractions.split(",")]
    except ValueError:
        raise UserError(f"--fractions {fractions!r}: expected four comma-separated numbers") from None
    if len(parts) != 4:
        raise UserError(f"--fractions {fractions!r}: expected four numbers (train,holdout,reference,test)")
    manifest = scan_dataset(_dir(directory))
    if manifest.problems:
        raise UserError(str(manifest.problems[0]))
    # Splits need only ids, vendors and groups: build a light cohort without reading NIfTI data.
    empty = np.zeros((0, 0, 0, 0), np.float32)
    subjects = [
        Subject(r.subject_id, r.vendor, r.centre, r.group, (1.0, 1.0, 1.0), 0, 0, empty, None, np.zeros(0, bool), str(r.image_path))
        for r in manifest.records
    ]
    cohort = Cohort(subjects, manifest.name, manifest.layout, data_hash(manifest.root, manifest.files), str(manifest.root))
    f = dict(zip(SPLIT_NAMES, parts))
    splits = make_lovo_splits(cohort, vendor, f, seed) if lovo else make_splits(cohort, f, seed)
    save_splits(splits, out)
    typer.echo(f"{out}: " + ", ".join(f"{k}={len(v)}" for k, v in splits.assignments.items()))


@app.command("phantom")
def phantom_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Output directory."),
    subjects: int = typer.Option(10, "--subjects", "-n", help="Number of subjects."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    layout: str = typer.Option("acdc", "--layout", help="acdc | mnms."),
) -> None:
    """Write the built-in cine phantom in ACDC or M&Ms layout.

    \b
    Examples:
      audit data phantom --out phantom --subjects 20 --seed 0
      audit data phantom --out phantom-mnms --subjects 20 --layout mnms
    """
    if layout not in ("acdc", "mnms"):
        raise UserError(f"--layout {layout!r}: choose acdc or mnms")
    if subjects < 1:
        raise UserError(f"--subjects {subjects}: must be at least 1")
    from cohorts.phantom import write_dataset  # lazy: keeps `audit --help` fast (pulls in the data stack)

    path = write_dataset(out, subjects, seed, layout=layout)
    typer.echo(str(path if path is not None else out))
