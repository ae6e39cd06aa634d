"""One run, end to end: cohort -> fit -> sample -> audits -> results.json -> report.html.

Each stage writes its outputs atomically and is recorded in ``state.json`` when it has
finished; ``--resume`` skips finished stages (after checking that the requested config equals
the stored one), so an interrupted run either continues or fails cleanly.

Everything that can be checked before work starts is checked first (generator name, preset,
config keys, run directory), so bad input costs nothing and overwrites nothing. The generator
options are resolved before ``config.json`` is written (``docs/configuration.md``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from audit.core.atomic import atomic_write_json
from audit.core.errors import UserError
from audit.core.logs import add_file_handler
from audit.core.paths import check_cache_writable
from audit.core.provenance import environment, sha256_json
from audit.core.results import SECTIONS, new_results, unavailable, write_results
from audit.fidelity.external import read_pinned
from audit.pipeline import config as C
from audit.pipeline.context import RunContext, Stage, release_fit_workers
from audit.pipeline.rundir import RunDir, utc_now
from audit.pipeline import stages as default_stages
from audit.pipeline.stages import fit_on_worker
from audit.pipeline.utility_external import external_folder
from audit.pipeline.utility_options import options_from_config
from audit.privacy.canaries import check_request
from cohorts.source import PHANTOM, check_folder
from cohorts.splits import load_splits
from generators import distributed, registry
from generators.conditioning import lenient_labels
from generators.device import resolve
from generators.sampleset import SampleSet

log = logging.getLogger(__name__)


@dataclass
class RunRequest:
    """What the user asked for on the command line (``None`` = not given)."""

    generator: str | None = None
    preset: str | None = None
    out: Path | None = None
    config_file: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    resume: bool = False
    force: bool = False
    #: reuse / store trained generators in the fit cache (``--no-cache`` turns it off)
    use_cache: bool = True


def _requested_overrides(req: RunRequest) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    if req.config_file:
        merged.update(C.load_config_file(req.config_file))
    merged.update(req.overrides)
    return merged


def _resolve_fresh(req: RunRequest) -> tuple[C.RunConfig, registry.GeneratorEntry]:
    name = req.generator or C.DEFAULT_GENERATOR
    preset = req.preset or C.DEFAULT_PRESET
    if preset not in C.PRESETS:
        raise UserError(f"unknown preset '{preset}'; choose one of: {', '.join(C.PRESETS)}")
    entry = registry.get(name)
    cfg = C.resolve_config(
        preset=preset,
        generator=name,
        generator_preset=(entry.presets or {}).get(preset, {}),
        config_file=req.config_file,
        overrides=req.overrides,
    )
    return cfg, entry


def with_resolved_options(cfg: C.RunConfig, entry: registry.GeneratorEntry) -> C.RunConfig:
    """``cfg`` with its ``generator_options`` resolved by the generator class (family defaults, the
    nested autoencoder defaults, then the given options: :meth:`generators.base.Generator.resolve_options`),
    so that ``config.json`` alone rebuilds the generator; a generator without ``resolve_options`` (a
    plugin) keeps its options as given. Idempotent: a resolved config resolves to itself."""
    resolve = getattr(entry.cls, "resolve_options", None)
    if resolve is None:
        return cfg
    return dataclasses.replace(cfg, generator_options=resolve(cfg.generator_options or {}))


def _resolve_resume(req: RunRequest, run_dir: RunDir) -> tuple[C.RunConfig, registry.GeneratorEntry]:
    try:
        stored = C.config_from_dict(json.loads(run_dir.config_path.read_text("utf-8")))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{run_dir.config_path}: cannot read the stored config ({exc})") from None
    requested = dict(_requested_overrides(req))
    if req.preset is not None:
        requested["preset"] = req.preset
    if req.generator is not None:
        requested["generator"] = req.generator
    wanted = C.apply_overrides(stored, requested)
    # compared resolved: a run directory of an older version holds the generator options as given
    entry = registry.get(stored.generator)
    stored = with_resolved_options(stored, entry)
    if wanted.generator == stored.generator:  # else the diff names the generator
        wanted = with_resolved_options(wanted, entry)
    diff = C.config_diff(stored, wanted)
    if diff:
        raise UserError(
            f"--resume: the requested config differs from {run_dir.config_path} in {', '.join(diff)}; "
            "resume with the same options or start a new run"
        )
    return stored, entry


def prepare(req: RunRequest) -> RunContext:
    """Validate the request and create/reopen the run directory (no heavy work)."""
    if req.resume:
        if req.out is None and req.generator is None:
            req.generator = C.DEFAULT_GENERATOR
        run_dir = RunDir.prepare(req.out, req.generator or C.DEFAULT_GENERATOR, resume=True)
        cfg, entry = _resolve_resume(req, run_dir)
        _check_inputs(cfg, run_dir)
        if json.loads(run_dir.config_path.read_text("utf-8")) != C.config_to_dict(cfg):
            # an older run directory: its generator options as given become the resolved ones
            atomic_write_json(run_dir.config_path, C.config_to_dict(cfg))
    else:
        cfg, entry = _resolve_fresh(req)
        _check_inputs(cfg)
        cfg = with_resolved_options(cfg, entry)
        run_dir = RunDir.prepare(req.out, cfg.generator, force=req.force)
        atomic_write_json(run_dir.config_path, C.config_to_dict(cfg))
        atomic_write_json(run_dir.env_path, environment())
    return RunContext(cfg=cfg, run_dir=run_dir, entry=entry, use_cache=req.use_cache)


def _check_inputs(cfg: C.RunConfig, run_dir: RunDir | None = None) -> None:
    """Files and devices the run will need, checked before any data work (``--device cuda`` on a
    machine without a GPU fails here; the ``full`` preset asks for cuda: pass ``--device cpu``).

    The cache folder must be writable, a ``--split-file`` must be a well-formed split file (its
    data hash is checked against the cohort in the cohort stage) and an external ``--samples``
    set is read and validated in full: otherwise each of them fails only after the cohort stage,
    minutes in. On ``--resume`` (``run_dir`` given) an input a finished stage has already
    consumed is not needed again and not checked.

    A TorchScript ``audit.feature_extractor`` must match its pinned ``audit.feature_extractor_sha256``:
    loading it runs its code (:mod:`audit.fidelity.external`; checked again on the bytes it loads)."""

    done = run_dir.stage_done if run_dir is not None else (lambda name: False)
    check_cache_writable()
    generator_cls = registry.get(cfg.generator).cls
    if cfg.dp.audit_canaries:
        # with an explicit --dp-delta the game's ceiling is checked here too; a plan already drawn was checked then
        planned = run_dir is not None and (run_dir.path / "canaries.json").is_file()
        check_request(cfg.dp.audit_canaries, dp_enabled=cfg.dp.enabled,
                      generator_data=getattr(generator_cls, "data", "slices"),
                      unit=None if planned else cfg.dp.audit_canary_unit, dp_unit=cfg.dp.unit,
                      claimed_epsilon=cfg.dp.epsilon or None, delta=0.0 if planned else cfg.dp.delta)
    if cfg.device != "cpu":
        resolve(cfg.device)
    fx = cfg.audit.feature_extractor
    if fx and not done("fidelity"):
        read_pinned(fx, cfg.audit.feature_extractor_sha256)
    if cfg.data.source != PHANTOM and not done("cohort"):
        check_folder(cfg.data.source)
    if cfg.data.split_file and not done("cohort"):
        if not load_splits(cfg.data.split_file).assignments.get("train"):
            raise UserError(f"{cfg.data.split_file}: the train split is empty (the generator trains on it, and its "
                            "subjects are the members of the privacy audit)")
    if cfg.audit.utility:
        options_from_config(cfg)  # the audit.utility_* ranges: one clear line now, not after the fit
        if cfg.audit.utility_test_data and not done("cohort"):
            external_folder(cfg)  # read and checked in full in the cohort stage
    check_options = getattr(generator_cls, "check_options", None)  # a plugin may not have it
    if check_options is not None:
        check_options(cfg.generator_options or {})
    if cfg.generator == "external" and not done("sample"):
        SampleSet.load(cfg.generator_options["samples"])


def _finish(ctx: RunContext) -> Path:
    cfg = ctx.cfg
    created = ctx.run_dir.state().get("created_utc", utc_now())
    doc = new_results(run_id=ctx.run_dir.run_id, generator=cfg.generator, preset=cfg.preset, created_utc=created)
    doc["run"]["finished_utc"] = utc_now()
    for section in SECTIONS:
        doc[section] = ctx.artefacts.get(f"results.{section}") or {
            "audit": unavailable(f"the {section} audit is not available yet")
        }
    if "results.dp" not in ctx.artefacts and not cfg.dp.enabled:
        doc["dp"] = {"accounting": unavailable("trained without differential privacy (no --dp-epsilon / --dp-noise-multiplier)")}
    env = json.loads(ctx.run_dir.env_path.read_text("utf-8"))
    doc["provenance"] = {
        "config_sha256": sha256_json(C.config_to_dict(cfg)),
        "data_hash": env.get("data_hash", "unknown"),
        "seed": cfg.seed,
        "git_commit": (env.get("git") or {}).get("commit"),
        "timing_s": {k: round(v, 3) for k, v in ctx.timing.items()},
    }
    return write_results(ctx.run_dir.results_path, doc)


def _fit_worker(group) -> Path | None:
    """A rank > 0 under torchrun: wait for rank 0's run, join its ``fit`` stage, write nothing."""

    info = distributed.broadcast(None)
    if info is None:  # rank 0 stopped before the pipeline started
        return None
    cfg = C.config_from_dict(info["config"])
    ctx = RunContext(cfg=cfg, run_dir=RunDir(Path(info["run_dir"])), entry=registry.get(cfg.generator),
                     use_cache=info["use_cache"])
    decision = distributed.broadcast(None)
    if decision and decision.get("train"):
        log.info("rank %d: joining the fit of %s", group.rank, ctx.run_dir.path)
        fit_on_worker(ctx, resume=bool(decision["resume"]))
    return ctx.run_dir.path


def execute(req: RunRequest, stages: list[Stage] | None = None,
            report: Callable[[Path, bool], Path] | None = None) -> Path | None:
    """Run (or resume) the whole pipeline; returns the run directory.

    ``report(run_dir, include_real_images)`` renders the report once ``results.json`` is written,
    before the run is marked finished (the CLI passes :func:`reports.run_report.write_report`: the
    pipeline sits below the reports layer and does not import it).

    Under ``torchrun`` (several processes: :mod:`generators.distributed`) rank 0 runs the
    pipeline and writes everything; the other ranks only join the ``fit`` stage's training and
    return the run directory when it is done (``None`` if rank 0 stopped before the run started).
    """

    group = distributed.init_from_env() if distributed.requested() else None
    if group is not None and group.rank > 0:
        return _fit_worker(group)
    try:
        ctx = prepare(req)
    except BaseException:
        distributed.broadcast(None)  # release the other ranks
        raise
    distributed.broadcast({"run_dir": str(ctx.run_dir.path), "config": C.config_to_dict(ctx.cfg), "use_cache": ctx.use_cache})
    handler = add_file_handler(ctx.run_dir.log_path)
    try:
        state = ctx.run_dir.state()
        if req.resume and state.get("status") == "running" and state.get("current_stage"):
            # the last invocation died without a word (SIGKILL, out of memory, power loss)
            log.warning("--resume: the previous invocation stopped inside stage %s without finishing or failing "
                        "(killed?); continuing from its last finished stage", state["current_stage"])
        if "created_utc" not in state:
            ctx.run_dir.set_status("running", created_utc=utc_now())
        else:
            ctx.run_dir.set_status("running")
        log.info("run %s: generator=%s preset=%s seed=%d", ctx.run_dir.path, ctx.cfg.generator, ctx.cfg.preset, ctx.cfg.seed)
        for stage in default_stages.PIPELINE if stages is None else stages:
            if req.resume and ctx.run_dir.stage_done(stage.name):
                log.info("stage %s: already finished, skipped (--resume)", stage.name)
                if stage.load is not None:
                    stage.load(ctx)
                if stage.name == "fit":
                    release_fit_workers(ctx)
                continue
            # state.json names the stage in progress, so a run killed mid-stage says where it died
            ctx.run_dir.set_status("running", current_stage=stage.name)
            log.info("stage %s: started", stage.name)
            t0 = time.perf_counter()
            with lenient_labels():  # real subjects of a vendor / group the model never trained on: null label, warned
                info = stage.run(ctx) or {}
            ctx.timing[stage.name] = time.perf_counter() - t0
            ctx.run_dir.mark_stage(stage.name, seconds=round(ctx.timing[stage.name], 3), **info)
            log.info("stage %s: done in %.1f s", stage.name, ctx.timing[stage.name])
            if stage.name == "fit":
                release_fit_workers(ctx)  # if the stage did not train (cache hit, reference generator)
        release_fit_workers(ctx)
        _finish(ctx)
        if report is not None:
            t0 = time.perf_counter()
            path = report(ctx.run_dir.path, ctx.cfg.audit.include_real_images)
            log.info("report: %s (%.1f s)", path, time.perf_counter() - t0)
        ctx.run_dir.set_status("finished", current_stage=None)
        log.info("results: %s", ctx.run_dir.results_path)
        return ctx.run_dir.path
    except BaseException as exc:
        ctx.run_dir.set_status("failed", error=f"{type(exc).__name__}: {exc}")
        release_fit_workers(ctx)
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
