"""The ``audit`` command line.

Errors are part of the interface: bad input prints one line ``error: ...`` and exits 2; a
capability that is not built yet prints ``not available yet: ...`` and exits 3; an internal
error prints one line (the traceback goes to the log at ``--verbose``) and exits 1.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from audit import __version__
from audit.cli import data as data_cli
from audit.cli import judge as judge_cli
from audit.core.errors import NotAvailableError, UserError
from audit.core.logs import setup_logging

log = logging.getLogger("audit")

app = typer.Typer(
    name="audit",
    help=(
        "cmr-audit: privacy and fidelity audits for synthetic cardiac MRI.\n\n"
        "Trains or loads a generator, samples from it, runs privacy / fidelity / anatomy / "
        "utility audits and writes a run directory with results.json and report.html.\n\n"
        "Example:  audit run --generator ldm"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_cli.app, name="data")
app.add_typer(judge_cli.app, name="judge")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cmr-audit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output (repeat for debug)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors; no progress bars."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    setup_logging(-1 if quiet else verbose)


@app.command("run")
def run_cmd(
    generator: Optional[str] = typer.Option(None, "--generator", "-g", help="Registered generator name (see 'audit generators'); default ldm."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="smoke (seconds, tests) | quick (CPU, minutes; default) | full (GPU-sized)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Master seed (default 0)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Run directory (default runs/<UTC timestamp>-<generator>)."),
    data: Optional[str] = typer.Option(None, "--data", "--cohort", help="ACDC or M&Ms directory (default: the built-in phantom)."),
    utility_test_data: Optional[str] = typer.Option(None, "--utility-test-data", help="A second dataset (ACDC or M&Ms directory) on which every utility net is also scored, per vendor (cross-dataset domain gap); it never trains anything."),
    split_file: Optional[Path] = typer.Option(None, "--split-file", help="Reuse a splits.json (its data hash must match)."),
    samples: Optional[Path] = typer.Option(None, "--samples", help="Audit an external sample set (.npz contract) instead of training."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="JSON or TOML config file (dotted or nested keys)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", "-s", help="Override a config key: --set train.steps=500 (repeatable). "
                                                                   "audit.feature_extractor=FILE needs audit.feature_extractor_sha256=HASH: loading it runs its code."),
    dp_epsilon: Optional[float] = typer.Option(None, "--dp-epsilon", help="Train with DP-SGD (Opacus) to this end-to-end epsilon, per subject by default (dp.unit)."),
    dp_delta: Optional[float] = typer.Option(None, "--dp-delta", help="DP delta; must be < 1/N (default 1/(10 N), N = train subjects)."),
    dp_noise_multiplier: Optional[float] = typer.Option(None, "--dp-noise-multiplier", help="Fixed DP noise multiplier instead of a target epsilon (epsilon is then reported)."),
    dp_audit_canaries: Optional[int] = typer.Option(None, "--dp-audit-canaries", help="One-run DP audit (Steinke et al. 2023): plant K >= 10 training subjects (all their slices; at most half the train split) as canaries, each trained on with probability 1/2, and report the epsilon lower bound their white-box scores prove (needs --dp-*; refused before training when no outcome could prove the claimed epsilon). --set dp.audit_canary_unit=image plants single slices instead."),
    dp_max_grad_norm: Optional[float] = typer.Option(None, "--dp-max-grad-norm", help="DP clipping norm C per privacy unit (default 1.0)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda | cuda:N: where generators train, sample and score and the judge runs (bf16 autocast on CUDA except under DP). The full preset asks for cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run (same config); without --out the latest unfinished one."),
    force: bool = typer.Option(False, "--force", help="Clear an existing run directory and start afresh."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Retrain even if the fit cache holds this exact model (same config, data and code), and do not store it."),
) -> None:
    """Train (or load) a generator, sample, audit, and write a run directory.

    \b
    Examples:
      audit run --generator ldm                      # quick preset on the built-in phantom
      audit run --generator gan --preset smoke --out runs/gan-smoke
      audit run --generator ddpm --set train.steps=500 --seed 3
      audit run --generator ldm --dp-epsilon 8 --dp-delta 1e-5
      audit run --generator ldm --dp-epsilon 1 --dp-audit-canaries 32    # + one-run audit of the claim
      audit run --samples synth.npz --cohort /data/ACDC --split-file splits.json
      audit run --generator ldm --data /data/ACDC --utility-test-data /data/MnMs   # + cross-dataset utility
      audit run --generator ldm --resume             # continue the latest unfinished ldm run
      torchrun --standalone --nproc_per_node 2 -m audit run --generator ldm   # data-parallel training

    A TorchScript feature extractor (standard Inception FID) is code: loading it runs it inside the
    audit. Give its sha256 with it; a run without the hash, or with another file, is refused:

    \b
      sha256sum inception.pt                         # check it against the hash its maker published
      audit run --samples synth.npz --set audit.feature_extractor=inception.pt \\
          --set audit.feature_extractor_sha256=<the 64 hex digits sha256sum printed>
    """
    from audit.pipeline.run import RunRequest, execute  # lazy: keeps `audit --help` fast (pulls in torch)

    _check_run_flags(seed=seed, dp_epsilon=dp_epsilon, dp_delta=dp_delta, dp_noise_multiplier=dp_noise_multiplier,
                     dp_max_grad_norm=dp_max_grad_norm)
    overrides = _run_overrides(set_, {
        "seed": seed,
        "data.source": data,
        "data.split_file": str(split_file) if split_file else None,
        "audit.utility_test_data": utility_test_data,
        "dp.epsilon": dp_epsilon,
        "dp.delta": dp_delta,
        "dp.noise_multiplier": dp_noise_multiplier,
        "dp.max_grad_norm": dp_max_grad_norm,
        "dp.audit_canaries": dp_audit_canaries,
        "device": device,
    }, samples)
    if samples is not None:
        generator = "external"
    request = RunRequest(
        generator=generator, preset=preset, out=out, config_file=config, overrides=overrides,
        resume=resume, force=force, use_cache=not no_cache,
    )
    run_dir = execute(request, report=_render_report)
    from generators.distributed import is_main  # lazy: keeps `audit --help` fast (pulls in torch)

    if run_dir is not None and is_main():  # under torchrun the other ranks only joined the training
        typer.echo(str(run_dir))


def _check_run_flags(*, seed: Optional[int], dp_epsilon: Optional[float], dp_delta: Optional[float],
                     dp_noise_multiplier: Optional[float], dp_max_grad_norm: Optional[float]) -> None:
    """The numeric flags of ``audit run`` that need a range check before any config is resolved."""
    # written so that NaN fails too (every comparison with NaN is false); inf is no epsilon
    # (and JSON, which config.json is, cannot hold it)
    for flag, value in (("--dp-epsilon", dp_epsilon), ("--dp-noise-multiplier", dp_noise_multiplier),
                        ("--dp-max-grad-norm", dp_max_grad_norm)):
        if value is not None and not 0 < value < math.inf:
            raise UserError(f"{flag} must be a finite number > 0, got {value:g}")
    if dp_delta is not None and not 0 < dp_delta < 1:
        raise UserError(f"--dp-delta must be in (0, 1), got {dp_delta:g}")
    if seed is not None and not 0 <= seed < 2**32:
        raise UserError(f"--seed must be in [0, 2**32), got {seed}")


def _run_overrides(set_: Optional[List[str]], flags: dict, samples: Optional[Path]) -> dict:
    """Config overrides of ``audit run``: the ``--set`` options, then the flags that were given
    (``flags``: config key -> value or None), then the external sample set of ``--samples``."""
    from audit.pipeline.config import parse_set_options  # lazy: keeps `audit --help` fast (pulls in torch)

    overrides = parse_set_options(set_)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if samples is not None:
        # as a JSON string: --set values of generator_options are parsed as JSON, and a file
        # named 123 or true must stay a path
        overrides["generator_options.samples"] = json.dumps(str(samples))
    return overrides


def _render_report(run_dir: Path, include_real_images: bool) -> Path:
    """The report step of ``audit run`` (the pipeline calls it after results.json is written)."""
    from reports.run_report import write_report  # lazy: matplotlib and jinja2 only when a report is written

    return write_report(run_dir, include_real_images=include_real_images)


@app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory written by 'audit run'."),
    include_real_images: bool = typer.Option(False, "--include-real-images",
                                             help="Allow real patient images in the report (adds a banner)."),
) -> None:
    """(Re)write RUN_DIR/report.html: one self-contained HTML file (inline CSS and images, no
    JavaScript, no external requests), plus figures/ (PNG + SVG) and tables/ (CSV).

    'audit run' writes it at the end of every run; use this after upgrading cmr-audit or to
    change --include-real-images. Parts whose inputs are missing are named in the report.

    \b
    Example:
      audit report runs/20261126T101500Z-ldm
    """
    from reports.run_report import write_report  # lazy: keeps `audit --help` fast (pulls in torch)

    typer.echo(str(write_report(run_dir, include_real_images=include_real_images)))


@app.command("compare")
def compare_cmd(
    run_dirs: List[Path] = typer.Argument(..., help="Run directories to compare (one or more)."),
    out: Path = typer.Option(Path("compare.html"), "--out", "-o", help="Output HTML file; the table goes beside it as .csv, the figures into <stem>_figures/."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy TOML for the ranking (default: the shipped policy)."),
) -> None:
    """Compare several runs side by side in one self-contained HTML report.

    One table of headline figures with CIs (best per column marked), a privacy-vs-fidelity and
    a privacy-vs-utility scatter with the Pareto front, and a ranking with the release policy
    applied to each run (in memory: no signoff files are written). Also writes OUT.csv (the
    table) and OUT_figures/ (PNG + SVG). Exit 0 when written; bad input exits 2.

    \b
    Examples:
      audit compare runs/*-gan runs/*-ldm runs/*-flow --out compare.html
      audit compare runs/*-ldm runs/*-ldm-dp8 --policy site-policy.toml --out dp.html
    """
    from reports.compare import write_compare  # lazy: keeps `audit --help` fast (pulls in torch)

    result = write_compare(run_dirs, out, policy_path=policy)
    for r in result.ranking:
        typer.echo(f"{r['rank']:>3}. {r['label']} ({r['generator']}): {r['verdict']}")
    typer.echo(f"wrote {result.html_path}")
    typer.echo(f"wrote {result.csv_path}")
    typer.echo(f"wrote {result.figures_dir}/")


@app.command("signoff")
def signoff_cmd(
    run_dir: Path = typer.Argument(..., help="A finished run directory (holds results.json and samples.npz)."),
    policy: Optional[Path] = typer.Option(None, "--policy", help="Policy TOML (default: the shipped policy, reports/policies/default.toml)."),
) -> None:
    """Apply a release policy to a run: PASS / WARN / FAIL / INCOMPLETE per criterion and overall.

    Writes signoff.json and signoff.html into RUN_DIR: the verdicts with the observed figures,
    CIs, thresholds and rationales, the sha256 of results.json, samples.npz and the policy file,
    and empty reviewer / reviewed_utc / decision_notes fields for the privacy officer.

    A figure the policy needs that is unavailable or missing makes its criterion INCOMPLETE,
    never PASS. Overall verdict = the worst criterion (FAIL > INCOMPLETE > WARN > PASS).

    \b
    Exit codes:
      0  PASS
      1  WARN
      2  FAIL or INCOMPLETE (and bad input: a missing results.json, an invalid policy)

    \b
    Examples:
      audit signoff runs/20261126T101500Z-ldm                  # the shipped default policy
      audit signoff runs/20261126T101500Z-ldm --policy policy.toml
    """

    from reports.signoff import sign_off  # lazy: keeps `audit --help` fast (pulls in torch)

    result = sign_off(run_dir, policy)
    s = result.signoff
    table = Table(title=Text(f"sign-off: {s['run']['generator']} / {s['run']['id']}"), show_lines=False)
    for col in ("criterion", "verdict", "observed", "threshold", "reason"):
        table.add_column(col)
    for c in s["criteria"]:
        obs = c["observed"]
        unit = "" if obs is None or obs.get("unit") in (None, "1") else f" {obs['unit']}"
        observed = "-" if obs is None else f"{obs['value']:.4g}{unit}"
        if obs is not None and obs.get("ci_low") is not None and obs.get("ci_high") is not None:
            observed += f" [{obs['ci_low']:.4g}, {obs['ci_high']:.4g}]"
        threshold = f"{c['op']} {c['threshold']:.4g}" + (" x ref" if c["reference"] is not None else "")
        # Text, not markup: names and reasons come from files and must be shown literally
        table.add_row(Text(c["id"]), Text(c["verdict"]), Text(observed), Text(threshold), Text(c["reason"]))
    Console(width=160).print(table)
    typer.echo(f"policy: {s['policy']['path']} (sha256 {s['policy']['sha256'][:12]})")
    typer.echo(f"verdict: {result.verdict} (exit {result.exit_code})")
    typer.echo(f"wrote {result.json_path}")
    typer.echo(f"wrote {result.html_path}")
    raise typer.Exit(result.exit_code)


@app.command("generators")
def generators_cmd() -> None:
    """List registered generators, their presets, and planned families.

    \b
    Example:
      audit generators
    """
    from audit.pipeline.config import PRESETS  # lazy: keeps `audit --help` fast (pulls in torch)
    from generators.registry import discover  # lazy: keeps `audit --help` fast (pulls in torch)

    rows = []
    for entry in discover().values():
        presets = ", ".join(PRESETS) if entry.status == "available" else "-"
        status = {"planned": "not available yet", "broken": f"broken: {entry.error}"}.get(entry.status, entry.status)
        rows.append((entry.name, status, entry.family or "-", presets, entry.description))
    _print_table("generators", ("name", "status", "family", "presets", "description"), rows)


def _print_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = Table(title=title, show_lines=False)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


@app.command("plugins")
def plugins_cmd() -> None:
    """List installed plugins: generators, attacks and metrics (entry points), broken ones with their error.

    \b
    Entry point groups: cmr_audit.generators, cmr_audit.attacks, cmr_audit.metrics.
    Example:
      audit plugins
    """
    from audit.core import plugins  # lazy: keeps `audit --help` fast (pulls in torch)
    from audit.privacy.attacks import plugin_attacks  # lazy: keeps `audit --help` fast (pulls in torch)
    from generators.registry import discover  # lazy: keeps `audit --help` fast (pulls in torch)

    rows = [(plugins.GENERATORS, e.name, e.status if e.status != "broken" else f"broken: {e.error}", e.source,
             e.description) for e in discover().values() if e.status != "planned"]
    for group, found in ((plugins.ATTACKS, plugin_attacks()), (plugins.METRICS, plugins.metrics())):
        for p in found:
            what = "" if p.broken else (getattr(p.obj, "description", "") or type(p.obj).__name__)
            if not p.broken:
                what = f"[{p.obj.section if group == plugins.METRICS else p.obj.kind}] {what}"
            rows.append((group, p.name, f"broken: {p.error}" if p.broken else "available", p.source, what))
    _print_table("plugins", ("group", "name", "status", "source", "what"), rows)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit status.

    Typer (standalone mode) handles usage errors itself (exit 2 with the usage line); our own
    error types are caught here and shown as one line.
    """
    try:
        app(args=argv, prog_name="audit")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except NotAvailableError as exc:
        typer.echo(f"not available yet: {exc}", err=True)
        return exc.exit_code
    except UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except Exception as exc:  # noqa: BLE001 - last line of defence: one line, traceback in the log
        log.debug("internal error", exc_info=True)
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (rerun with --verbose for the traceback)", err=True)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        return 1
    return 0
