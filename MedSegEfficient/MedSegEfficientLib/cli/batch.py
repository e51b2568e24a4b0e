"""``medseg batch``: a cohort through one model, loaded once per worker, resumable from its manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from MedSegEfficientLib.batch.cases import collect_cases
from MedSegEfficientLib.batch.local_pool import WorkerSettings, run_local, threads_per_worker
from MedSegEfficientLib.batch.manifest import Manifest
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.io.outputs import SEGMENTATION_SUFFIX, VOLUME_SUFFIXES, check_writable
from MedSegEfficientLib.model.library import default_model_path, resolve_model_path
from MedSegEfficientLib.model.model_file import read_card


def run(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise MedSegError(f"--workers must be 1 or more, not {args.workers}")
    if args.format not in (SEGMENTATION_SUFFIX, *VOLUME_SUFFIXES):
        raise MedSegError(f"--format {args.format}: use {', '.join((SEGMENTATION_SUFFIX, *VOLUME_SUFFIXES))}")
    out_dir = Path(args.output)
    check_writable(out_dir / ("probe" + args.format))
    model = resolve_model_path(args.model or default_model_path())
    read_card(model)  # a bad model file is one line here, not a failure in every worker
    cases = collect_cases(args.inputs, out_dir, args.format)
    if any(case.input == case.output.resolve() for case in cases):
        raise MedSegError("an input lies where its output would go; choose another output folder")
    manifest = Manifest(out_dir)
    settings = WorkerSettings(str(model), args.device, args.fast, threads_per_worker(args.workers))
    already = len(manifest.done() & {str(case.input) for case in cases})
    if already:
        print(f"medseg batch: {already} of {len(cases)} cases already done ({manifest.path}); skipping them",
              file=sys.stderr)
    from tqdm import tqdm

    with tqdm(total=len(cases) - already, unit="case", disable=args.quiet, file=sys.stderr,
              dynamic_ncols=True) as bar:
        def finished(entry) -> None:
            bar.update(1)
            bar.set_postfix_str(f"{Path(entry.input).name}: {entry.status}")

        summary = run_local(cases, manifest, settings, args.workers, finished)
    seconds = [entry.seconds for entry in summary.done]
    per_case = f", {sum(seconds) / len(seconds):.1f} s per case" if seconds else ""
    print(f"medseg batch: {len(summary.done)} done, {len(summary.failed)} failed, {summary.skipped} skipped"
          f"{per_case}; manifest {manifest.path}")
    if summary.requeued:
        print(f"  {summary.requeued} case(s) sent again to a fresh pool after a worker died; none was lost")
    for entry in summary.failed:
        print(f"  failed: {entry.input}: {entry.error}")
    return 0 if not summary.failed else 2
