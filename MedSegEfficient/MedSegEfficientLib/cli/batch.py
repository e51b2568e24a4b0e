"""``medseg batch``: a cohort through one model, loaded once per worker, resumable from its manifest, on local
worker processes or on Ray actors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from MedSegEfficientLib.batch.cases import collect_cases
from MedSegEfficientLib.batch.ledger import BatchSummary
from MedSegEfficientLib.batch.manifest import Manifest
from MedSegEfficientLib.batch.worker import WorkerSettings, threads_per_worker
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.outputs import SEGMENTATION_SUFFIX, VOLUME_SUFFIXES, check_writable
from MedSegEfficientLib.model.library import default_model_path, resolve_model_path
from MedSegEfficientLib.model.model_file import read_card


def run(args: argparse.Namespace) -> int:
    if args.workers is not None and args.workers < 1:
        raise MedSegError(f"--workers must be 1 or more, not {args.workers}")
    if args.format not in (SEGMENTATION_SUFFIX, *VOLUME_SUFFIXES):
        raise MedSegError(f"--format {args.format}: use {', '.join((SEGMENTATION_SUFFIX, *VOLUME_SUFFIXES))}")
    if args.engine == "local" and args.address:
        raise MedSegError("--address is for --engine ray")
    if args.engine == "ray":
        from MedSegEfficientLib.batch.ray_engine import import_ray

        import_ray()  # a missing extra is one line before anything is read
    out_dir = Path(args.output)
    check_writable(out_dir / ("probe" + args.format))
    model = resolve_model_path(args.model or default_model_path())
    read_card(model)  # a bad model file is one line here, not a failure in every worker
    if args.engine == "local":
        from MedSegEfficientLib.inference.gpu.devices import select_device

        select_device(args.device)  # an absent GPU is one line here (a Ray cluster's GPUs may be elsewhere)
    manifest = Manifest(out_dir)
    earlier_outputs = {entry.output for entry in manifest.latest().values()}
    cases = collect_cases(args.inputs, out_dir, args.format, earlier_outputs)
    if any(case.input == case.output.resolve() for case in cases):
        raise MedSegError("an input lies where its output would go; choose another output folder")
    done = manifest.done()
    already = sum(manifest.is_done(case.input, case.output, done) for case in cases)
    if already:
        print(f"medseg batch: {already} of {len(cases)} cases already done ({manifest.path}); skipping them",
              file=sys.stderr)
    from tqdm import tqdm

    from MedSegEfficientLib.cli.termination import stop_on_termination

    # The workers are stopped, and the manifest stays true, whatever ends the batch.
    with stop_on_termination(), tqdm(total=len(cases) - already, unit="case", disable=args.quiet, file=sys.stderr,
                                     dynamic_ncols=True) as bar:
        def finished(entry) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{Path(entry.input).name}: {entry.status}")

        summary = _run_engine(args, cases, manifest, str(model), finished)
    return _report(summary, manifest)


def _run_engine(args: argparse.Namespace, cases, manifest: Manifest, model: str, finished) -> BatchSummary:
    if args.engine == "ray":
        from MedSegEfficientLib.batch.ray_engine import run_ray

        def started(placement) -> None:
            kind = f"{placement.gpus_per_actor:g} GPU" if placement.gpus_per_actor else \
                f"{placement.cpus_per_actor:g} CPU"
            print(f"medseg batch: {placement.actors} Ray actor(s), {kind} each", file=sys.stderr)

        settings = WorkerSettings(model, args.device, args.fast)
        return run_ray(cases, manifest, settings, args.workers, args.address, args.gpus_per_worker, finished,
                       started)
    from MedSegEfficientLib.batch.local_pool import run_local

    workers = args.workers or 1
    settings = WorkerSettings(model, args.device, args.fast, threads_per_worker(workers))
    return run_local(cases, manifest, settings, workers, finished)


def _report(summary: BatchSummary, manifest: Manifest) -> int:
    seconds = [entry.seconds for entry in summary.done]
    per_case = f", {sum(seconds) / len(seconds):.1f} s per case" if seconds else ""
    print(f"medseg batch: {len(summary.done)} done, {len(summary.failed)} failed, {summary.skipped} skipped"
          f"{per_case}; manifest {manifest.path}")
    if summary.requeued:
        print(f"  {summary.requeued} case(s) sent again to another worker after theirs died; none was lost")
    for entry in summary.failed:
        print(f"  failed: {entry.input}: {entry.error}")
    return 0 if not summary.failed else 2
