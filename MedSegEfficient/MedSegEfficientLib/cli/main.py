"""The ``medseg`` command line. Every user-facing failure is one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from MedSegEfficientLib import __version__
from MedSegEfficientLib.errors import Cancelled, MedSegError

EXIT_ERROR = 2
EXIT_CANCELLED = 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except Cancelled as error:
        print(f"medseg: {error}", file=sys.stderr)
        return EXIT_CANCELLED
    except KeyboardInterrupt:
        print("medseg: cancelled; nothing was written", file=sys.stderr)
        return EXIT_CANCELLED
    except MedSegError as error:
        print(f"medseg: error: {error}", file=sys.stderr)
        return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medseg", description="Efficient medical image segmentation.")
    parser.add_argument("--version", action="version", version=f"medseg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="segment an image (NIfTI, NRRD, MHA or a DICOM folder)")
    segment.add_argument("input", help="image file, or a folder holding one DICOM series")
    segment.add_argument("-o", "--output", required=True, help="OUT.seg.nrrd (Slicer) or a label map .nii.gz/.nrrd")
    segment.add_argument("--model", help="model file or name (default: the shipped abdominal CT demo model)")
    segment.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda or mps")
    segment.add_argument("--fast", action="store_true", help="fewer overlapping tiles: about half the time")
    segment.add_argument("--batch-size", type=int, help="tiles or slices per forward pass")
    segment.add_argument("--overlay", help="also write a PNG picture of the result over the image")
    segment.add_argument("--quiet", action="store_true", help="no progress bar")
    segment.add_argument("--json", help="write the run report (times per stage, memory, device) as JSON")
    segment.set_defaults(handler=_segment)

    models = commands.add_parser("models", help="list registered networks and shipped/imported model files")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=_models)

    info = commands.add_parser("info", help="parameters and MACs of a network or model file")
    info.add_argument("target", help="registered network name or model file")
    info.add_argument("--preset")
    info.add_argument("--input", help="input shape, e.g. 1x1x96x96x96 (default: the model's patch size)")
    info.add_argument("--classes", type=int, default=2, help="output channels for a bare network name")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=_info)

    evaluate = commands.add_parser("evaluate", help="per-label Dice of a model against a reference label map")
    evaluate.add_argument("image")
    evaluate.add_argument("reference")
    evaluate.add_argument("--model")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(handler=_evaluate)

    sample = commands.add_parser("sample-data", help="fetch the real sample CTs (TotalSegmentator 2.18.0, via pip)")
    sample.add_argument("--json", action="store_true")
    sample.add_argument("--path", metavar="NAME", help="print only this sample's path (e.g. example_ct)")
    sample.set_defaults(handler=_sample_data)

    importer = commands.add_parser("import", help="import weights into a model file",
                                   description="pth: a plain PyTorch state dict described by --card; "
                                               "xlstm-unet-nnunet: an nnU-Net v2 trained model folder of the "
                                               "xLSTM-UNet authors (plans.json, dataset.json, fold_*/checkpoint); "
                                               "mlla-imagenet / hrmedseg-pfd: pretrained encoder weights into a "
                                               "new MLLA-UNet / HRMedSeg model to train with medseg train --init")
    importer.add_argument("format", choices=["pth", "xlstm-unet-nnunet", "mlla-imagenet", "hrmedseg-pfd"])
    importer.add_argument("source", help="the .pth file, or the trained model folder")
    importer.add_argument("--card", help="pth: model card JSON describing the network")
    importer.add_argument("--fold", help="nnU-Net: which fold_* to take (default: the only one)")
    importer.add_argument("--checkpoint", help="nnU-Net: checkpoint file name (default: checkpoint_final.pth)")
    importer.add_argument("--name", help="model name shown in pickers (default: from the source)")
    importer.add_argument("--classes", type=int, default=2, help="encoder imports: output classes with background")
    importer.add_argument("-o", "--output", required=True)
    importer.set_defaults(handler=_import)

    from MedSegEfficientLib.cli.bench import add_bench_parser
    from MedSegEfficientLib.cli.train import add_train_parser

    add_train_parser(commands)
    add_bench_parser(commands)
    return parser


def _segment(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.model.library import default_model_path
    from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
    from MedSegEfficientLib.inference.file_pipeline import segment_file

    output = Path(args.output)
    if output.is_dir():
        raise MedSegError(f"{output} is a folder; give a file name such as {output / 'segmentation.seg.nrrd'}")
    options = SegmentOptions(device=args.device, fast=args.fast, batch_size=args.batch_size)
    segmenter = Segmenter.from_file(args.model or default_model_path(), options)
    with _ProgressBar(enabled=not args.quiet) as bar:
        result = segment_file(segmenter, args.input, output, progress=bar.update, overlay=args.overlay)
    for notice in result.report.notices:
        print(f"medseg: note: {notice}", file=sys.stderr)
    found = ", ".join(result.labels_found) or "nothing"
    print(f"{result.output}: {len(result.labels_found)} segments ({found}) in {result.report.summary()}")
    if args.json:
        report = {"output": str(result.output), "segments": result.labels_found, "seconds": result.report.seconds,
                  "peak_ram_bytes": result.report.peak_ram_bytes, "peak_gpu_bytes": result.report.peak_gpu_bytes,
                  "device": result.report.device, "notices": result.report.notices}
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def _models(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.cli.models import list_networks
    from MedSegEfficientLib.model.library import list_model_files

    networks, files = list_networks(), list_model_files()
    if args.json:
        print(json.dumps({"networks": networks, "models": files}, indent=2))
        return 0
    print("Networks:")
    for net in networks:
        presets = ", ".join(net["presets"]) or "-"
        print(f"  {net['name']:<18} {'/'.join(f'{d}D' for d in net['spatial_dims']):<6} presets: {presets}")
    print("Model files:")
    for entry in files:
        if "error" in entry:
            print(f"  {entry['path']}: unreadable ({entry['error']})")
            continue
        dice = entry.get("validation_mean_dice")
        print(f"  {entry['name']:<22} {entry['network']} {entry['spatial_dims']}D, {len(entry['labels'])} labels, "
              f"validation mean Dice {dice if dice is not None else 'n/a'}\n    {entry['path']}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.cli.models import describe_cost

    report = describe_cost(args.target, preset=args.preset, input_shape=args.input, classes=args.classes)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['network']} ({report['preset'] or 'no preset'}): {report['parameters'] / 1e6:.3f} M parameters, "
              f"{report['macs'] / 1e9:.3f} GMACs at input {'x'.join(map(str, report['input_shape']))}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.model.library import default_model_path
    from MedSegEfficientLib.model.weights import load_model
    from MedSegEfficientLib.training.datasets import CasePaths, load_cases
    from MedSegEfficientLib.inference.gpu.devices import select_device
    from MedSegEfficientLib.training.trainer import validate

    model = load_model(args.model or default_model_path())
    case = load_cases([CasePaths(Path(args.image), Path(args.reference))])
    scores = validate(model, case, select_device(args.device))
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        for name, value in scores.items():
            print(f"{name:<24} {'absent' if value != value else f'{value:.4f}'}")
    return 0


def _sample_data(args: argparse.Namespace) -> int:
    from MedSegEfficientLib.io.sample_data import sample_paths

    paths = sample_paths()
    if args.path:
        if args.path not in paths:
            raise MedSegError(f"no sample named '{args.path}' (samples: {', '.join(paths)})")
        print(paths[args.path])
        return 0
    if args.json:
        print(json.dumps({name: str(path) for name, path in paths.items()}, indent=2))
    else:
        for name, path in paths.items():
            print(f"{name:<18} {path}")
    return 0


def _import(args: argparse.Namespace) -> int:
    if args.format == "xlstm-unet-nnunet":
        from MedSegEfficientLib.importers.xlstm_unet_nnunet import import_xlstm_unet_nnunet

        output = import_xlstm_unet_nnunet(args.source, args.output, args.fold, args.checkpoint, args.name)
    elif args.format == "mlla-imagenet":
        from MedSegEfficientLib.importers.mlla_imagenet import import_mlla_imagenet

        output = import_mlla_imagenet(args.source, args.output, args.classes, args.name)
    elif args.format == "hrmedseg-pfd":
        from MedSegEfficientLib.importers.hrmedseg_pfd import import_hrmedseg_pfd

        output = import_hrmedseg_pfd(args.source, args.output, args.classes, args.name)
    else:
        from MedSegEfficientLib.model.card import ModelCard
        from MedSegEfficientLib.model.pth_import import import_state_dict

        if not args.card:
            raise MedSegError("import pth needs --card CARD.json describing the network")
        try:
            card = ModelCard.from_dict(json.loads(Path(args.card).read_text()))
        except (OSError, json.JSONDecodeError) as error:
            raise MedSegError(f"cannot read the card {args.card}: {error}") from None
        output = import_state_dict(args.source, card, args.output)
    print(f"wrote {output}")
    return 0


class _ProgressBar:
    """tqdm bar driven by the engine's (fraction, stage) callback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self) -> "_ProgressBar":
        from tqdm import tqdm

        self.bar = tqdm(total=100, disable=not self.enabled, unit="%", dynamic_ncols=True, file=sys.stderr,
                        bar_format="{desc:<15} {percentage:3.0f}%|{bar}| {elapsed}")
        return self

    def update(self, fraction: float, stage: str) -> None:
        self.bar.set_description_str(stage, refresh=False)
        self.bar.n = round(fraction * 100)
        self.bar.refresh()

    def __exit__(self, *exc) -> None:
        self.bar.close()


if __name__ == "__main__":
    sys.exit(main())
