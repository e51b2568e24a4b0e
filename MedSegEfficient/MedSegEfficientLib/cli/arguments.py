"""Every ``medseg`` command's arguments, in one light module: building the parser imports nothing heavy, so
``medseg --help`` answers at once. Each command's ``set_defaults(module=..., handler=...)`` names the module of
this package and the function that runs it; ``main.py`` imports that module only when the command runs.
"""

from __future__ import annotations

import argparse
import math


def whole(low: int, high: int):
    """An int option within [low, high]; anything else is argparse's one-line usage error naming the option."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    parse.__name__ = "whole number"
    return parse


def real(low: float, high: float, low_inclusive: bool = False):
    """A finite float option in (low, high] (or [low, high]): NaN and infinities are refused."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value > high or value < low or (value == low and not low_inclusive):
            bracket = "[" if low_inclusive else "("
            raise argparse.ArgumentTypeError(f"{text} is outside {bracket}{low:g}, {high:g}]")
        return value

    parse.__name__ = "number"
    return parse


SEED = whole(0, 2**32 - 1)
BATCH = whole(1, 4096)
CLASSES = whole(1, 4096)
EPOCHS = whole(1, 1_000_000)
LEARNING_RATE = real(0.0, 10.0)
MINUTES = real(0.0, 1e6)
LOADER_WORKERS = whole(0, 256)


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda or mps")


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model file or name (default: abdomen_ct_tokenseg, the shipped model best on the held-out scan)")


def add_commands(commands) -> None:
    # run by segment.py
    segment = commands.add_parser("segment", help="segment an image (NIfTI, NRRD, MHA or a DICOM folder)")
    segment.add_argument("input", help="image file, or a folder holding one DICOM series")
    segment.add_argument("-o", "--output", help="required (except with --list-series): OUT.seg.nrrd (Slicer), a label "
                                                "map .nii.gz/.nii/.nrrd/.mha, or a picture .png for a single-slice "
                                                "result")
    add_model(segment)
    add_device(segment)
    segment.add_argument("--fast", action="store_true", help="fewer overlapping tiles: about half the time")
    segment.add_argument("--batch-size", type=BATCH, help="tiles or slices per forward pass")
    segment.add_argument("--overlay", help="also write a PNG picture of the result over the image")
    segment.add_argument("--quiet", action="store_true", help="no progress bar")
    segment.add_argument("--json", help="write the run report (times per stage, memory, device) as JSON")
    segment.add_argument("--series", metavar="UID|NUMBER", help="DICOM folder: the series to segment, by its UID or "
                                                                "its number in --list-series (default: the largest "
                                                                "CT or MR series, named in a note)")
    segment.add_argument("--list-series", action="store_true", help="DICOM folder: list its series and stop")
    segment.add_argument("--force", action="store_true",
                         help="run even where the memory preflight says the run needs more RAM than is available")
    segment.set_defaults(module="segment", handler="run")

    # run by batch.py
    batch = commands.add_parser("batch", help="segment many images with one model, resumable from a manifest")
    batch.add_argument("inputs", nargs="+", help="image files, DICOM folders, folders of images, globs or a CSV")
    batch.add_argument("-o", "--output", required=True, help="output folder (the manifest is written there too)")
    add_model(batch)
    add_device(batch)
    batch.add_argument("--workers", type=whole(1, 256), help="workers, each with the model loaded once (default: 1; with "
                                                   "--engine ray, one per GPU or else 1)")
    batch.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local: worker processes on this machine (default); ray: Ray actors, on this machine or "
                            "a cluster (pip install 'medsegefficient[cluster]')")
    batch.add_argument("--address", help="--engine ray: the cluster to join (e.g. ray://head:10001 or auto); "
                                         "default: RAY_ADDRESS, else a Ray started for this run")
    batch.add_argument("--gpus-per-worker", type=real(0.0, 64.0), default=1.0,
                       help="--engine ray: GPUs each actor holds; 0.5 puts two actors on one GPU")
    batch.add_argument("--format", default=".nii.gz", help="output kind: .nii.gz (default), .nii, .nrrd, .mha or "
                                                            ".seg.nrrd")
    batch.add_argument("--fast", action="store_true", help="fewer overlapping tiles: about half the time")
    batch.add_argument("--quiet", action="store_true", help="no progress bar")
    batch.set_defaults(module="batch", handler="run")

    # run by tune.py
    tune = commands.add_parser("tune", help="choose a model's clean-up and test-time mirroring on validation scans")
    tune.add_argument("model", help="model file or name")
    tune.add_argument("--data", required=True, help="dataset folder (nnU-Net / MSD layout) with validation cases")
    tune.add_argument("-o", "--output", required=True, help="the new model file")
    add_device(tune)
    tune.add_argument("--quiet", action="store_true", help="no line per option tried")
    tune.set_defaults(module="tune", handler="run")

    # run by serve.py
    serve = commands.add_parser("serve", help="serve the models over MONAI Label's REST protocol (its Slicer module "
                                              "and client)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                                                           "only; any other needs --token)")
    serve.add_argument("--port", type=whole(0, 65535), default=8000, help="port (default 8000; 0 picks a free one)")
    serve.add_argument("--model", action="append", help="a model to serve (repeatable; default: every shipped and "
                                                        "imported model)")
    add_device(serve)
    serve.add_argument("--queue", type=whole(1, 100_000), default=16,
                       help="requests that may wait while every worker is busy; past that the server answers 503")
    serve.add_argument("--max-upload-mb", type=real(1 / 1024, 1 << 20, low_inclusive=True), default=1024, help="largest request body accepted (MiB)")
    serve.add_argument("--token", help="require Authorization: Bearer TOKEN (also MEDSEG_SERVE_TOKEN); MONAI "
                                       "Label's Slicer module asks for it as the password")
    serve.add_argument("--client-timeout", type=real(0.1, 3600, low_inclusive=True), default=30.0, metavar="SECONDS",
                       help="a client idle this long, or this late with its request's headers, is cut off; bodies and "
                            "answers get twice this plus 1 s per 256 KiB (default 30)")
    serve.add_argument("--fast", action="store_true", help="fewer overlapping tiles: about half the time")
    serve.add_argument("--quiet", action="store_true", help="no line per request")
    serve.set_defaults(module="serve", handler="run")

    # run by models.py
    models = commands.add_parser("models", help="list registered networks and shipped/imported model files")
    models.add_argument("--json", action="store_true", help="print the listing as JSON")
    models.set_defaults(module="models", handler="run_models")

    info = commands.add_parser("info", help="parameters and MACs of a network or model file")
    info.add_argument("target", help="registered network name, model file, or shipped/imported model name")
    info.add_argument("--preset", help="the network's preset (default: its default preset)")
    info.add_argument("--input", help="input shape, e.g. 1x1x96x96x96 (default: the model's patch size)")
    info.add_argument("--classes", type=CLASSES, default=2, help="output channels for a bare network name")
    info.add_argument("--json", action="store_true", help="print the figures as JSON")
    info.set_defaults(module="models", handler="run_info")

    # run by evaluate.py
    evaluate = commands.add_parser("evaluate", help="per-label Dice of a model against a reference label map")
    evaluate.add_argument("image", help="image file, or a folder holding one DICOM series")
    evaluate.add_argument("reference", help="reference label map on the image's grid")
    add_model(evaluate)
    add_device(evaluate)
    evaluate.add_argument("--label-map", metavar="NAME=NUMBER,...",
                          help="the reference's number for each label where it numbers them otherwise "
                               "(or a JSON object of names to numbers; a .seg.nrrd reference is matched by name)")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate.set_defaults(module="evaluate", handler="run")

    # run by sample_data.py
    sample = commands.add_parser("sample-data", help="fetch the real sample images via pip: CTs (TotalSegmentator 2.18.0), a T1 head (pyradiomics 3.1.0), fluorescence nuclei (stardist 0.9.2)")
    sample.add_argument("--json", action="store_true", help="print the paths as JSON")
    sample.add_argument("--path", metavar="NAME", help="print only this sample's path (e.g. example_ct)")
    sample.set_defaults(module="sample_data", handler="run")

    # run by importing.py
    importer = commands.add_parser("import", help="import weights into a model file",
                                   description="pth: a plain PyTorch state dict described by --card; "
                                               "nnunet: a trained nnU-Net v2 model folder (PlainConvUNet or "
                                               "ResidualEncoderUNet; plans.json, dataset.json, fold_*/checkpoint); "
                                               "totalsegmentator: TotalSegmentator's weights folder (e.g. "
                                               "~/.totalsegmentator/nnunet/results), a task split over several "
                                               "nnU-Net models merged into one model file (--task); "
                                               "xlstm-unet-nnunet: an nnU-Net v2 trained model folder of the "
                                               "xLSTM-UNet authors (plans.json, dataset.json, fold_*/checkpoint); "
                                               "mlla-imagenet / hrmedseg-pfd: pretrained encoder weights into a "
                                               "new MLLA-UNet / HRMedSeg model to train with medseg train --init; "
                                               "tm-unet / mlla-unet: a whole network saved by the TM-UNet / "
                                               "MLLA-UNet authors' training code")
    importer.add_argument("format", choices=["pth", "nnunet", "totalsegmentator", "xlstm-unet-nnunet", "mlla-imagenet",
                                             "hrmedseg-pfd", "tm-unet", "mlla-unet"],
                          help="what the source is (see above)")
    importer.add_argument("source", help="the .pth file, or the trained model folder")
    importer.add_argument("--card", help="pth: model card JSON describing the network")
    importer.add_argument("--folds", "--fold", dest="folds", metavar="F[,F...]",
                          help="nnU-Net: the fold_* to take, several averaged as nnU-Net does, e.g. 0,1,2,3,4 "
                               "(default: every numbered fold, as nnUNetPredictor)")
    importer.add_argument("--no-mirroring", action="store_true",
                          help="nnU-Net: no test-time mirroring (by default along the axes the checkpoint allows, "
                               "every combination, as nnUNetPredictor; 8 passes a tile for three axes)")
    importer.add_argument("--checkpoint", help="nnU-Net: checkpoint file name (default: checkpoint_final.pth)")
    importer.add_argument("--task", default="total",
                          help="totalsegmentator: total (default; its five parts), total_v3, total_mr, "
                               "headneck_muscles, or dataset ids in merge order, e.g. 291,292")
    importer.add_argument("--name", help="model name shown in pickers (default: from the source)")
    importer.add_argument("--classes", type=whole(2, 4096), default=2, help="encoder imports: output classes with background")
    importer.add_argument("--size", type=int,
                          help="tm-unet / mlla-unet: the side the authors trained at (default 512 / 224)")
    importer.add_argument("--in-channels", type=whole(1, 64), default=1,
                          help="mlla-unet: 1 for a grey model (their wrapper repeats grey to RGB), 3 for RGB")
    importer.add_argument("--decoder-init", choices=["encoder", "none"], default="encoder",
                          help="mlla-imagenet: start the decoder from the encoder as the authors' load_from does, "
                               "or leave it at its initial values")
    importer.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    importer.set_defaults(module="importing", handler="run")

    # run by cases.py
    cases = commands.add_parser("cases", help="your corrected cases of a model, to fine-tune it on (medseg finetune)")
    actions = cases.add_subparsers(dest="action", required=True, metavar="ACTION")
    adding = actions.add_parser("add", help="keep an image and its corrected label map as a training case",
                                description="The labels must be on the image's grid, numbered as the model numbers "
                                            "its labels (medseg models --json lists them); a value the model does "
                                            "not know is refused. The case is copied into the model's case folder "
                                            "(~/.medsegefficient/cases/MODEL, or $MEDSEG_CASES_DIR/MODEL), in the "
                                            "nnU-Net layout medseg train reads.")
    adding.add_argument("image", help="the image (NIfTI, NRRD, MHA or a DICOM folder)")
    adding.add_argument("labels", help="its corrected label map, in the model's numbering")
    adding.add_argument("--name", help="the case's name (default: from the label file; numbered, never replaced)")
    listing = actions.add_parser("list", help="list a model's cases")
    listing.add_argument("--json", action="store_true", help="as JSON")
    for action in (adding, listing):
        add_model(action)
        action.add_argument("--cases", metavar="FOLDER", help="the case folder (default: the model's own)")
    adding.set_defaults(module="cases", handler="add")
    listing.set_defaults(module="cases", handler="list_cases")

    # run by finetune.py
    tuning = commands.add_parser("finetune", help="improve a model on your corrected cases; kept only if not worse",
                                 description="Fine-tunes a copy of MODEL on the cases (one in five, at least one, "
                                             "held out) and writes it only if its mean Dice on the held-out cases is "
                                             "not lower than MODEL's; exit code 3 when it was discarded. The time is "
                                             "estimated before training starts and fits --minutes.")
    tuning.add_argument("model", help="model name or file")
    tuning.add_argument("--cases", metavar="FOLDER", help="the case folder (default: the model's own, where the "
                                                          "panel and medseg cases add keep them)")
    tuning.add_argument("-o", "--output", help="the new model file (default: MODEL_finetuned.safetensors in the user "
                                               "model folder, numbered if taken)")
    tuning.add_argument("--minutes", type=MINUTES, help="time budget (default: 4 on a GPU, 25 on a CPU)")
    tuning.add_argument("--base-data", metavar="FOLDER",
                        help="the model's own training data (nnU-Net layout), trained on beside the cases (default: "
                             "the folder its card's training command names, if it is here)")
    tuning.add_argument("--epochs", type=EPOCHS, help="epochs of 20 steps (default: as many as fit --minutes, at most 5)")
    tuning.add_argument("--lr", type=LEARNING_RATE, default=5e-4, help="AdamW learning rate (default 5e-4)")
    tuning.add_argument("--seed", type=SEED, default=0, help="random seed")
    tuning.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device(tuning)
    tuning.set_defaults(module="finetune", handler="run")

    # run by train.py
    train = commands.add_parser("train", help="train a model on an nnU-Net/MSD folder or image/label pairs")
    train.add_argument("data", nargs="?", help="folder with dataset.json, imagesTr/, labelsTr/")
    train.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    train.add_argument("--pairs", nargs="+", metavar="IMAGE:LABEL", help="image/label pairs instead of a folder")
    add_training_options(train)
    train.set_defaults(module="train", handler="run")

    # run by distill.py
    distill = commands.add_parser("distill", help="train a student network on a teacher's soft targets")
    distill.add_argument("teachers", nargs="*", metavar="TEACHER",
                         help="teacher model files or model names (several: an ensemble)")
    distill.add_argument("-o", "--output", required=True, help="student model file to write (.safetensors)")
    distill.add_argument("--images", nargs="+", default=[], metavar="FOLDER_OR_FILE",
                         help="unlabelled training images (files, folders of them, or DICOM folders)")
    distill.add_argument("--soft-targets", nargs="+", default=[], metavar="IMAGE:PROBABILITIES",
                         help="images with an outside teacher's probability map on their grid (one foreground "
                              "channel for two classes, or one per class)")
    distill.add_argument("--data", help="a labelled dataset folder (dataset.json): its labels are mixed into the "
                                        "targets, its validation cases validate")
    distill.add_argument("--validation", nargs="+", default=[], metavar="IMAGE:LABEL",
                         help="labelled scans never trained on, to choose and score the student")
    distill.add_argument("--label-weight", type=float, default=0.5,
                         help="share of the reference labels in the target where an image has them (0..1)")
    distill.add_argument("--labels", help="label names for outside teachers: a JSON list of labels or a dataset.json")
    distill.add_argument("--modality", help="the images' modality (default: the teacher's; MR for outside teachers)")
    distill.add_argument("--licence", default="", help="the student's licence and the teachers' terms, for its card")
    distill.add_argument("--teacher-description", default="",
                         help="who made the --soft-targets maps (tool, version, licence), for the card")
    add_training_options(distill)
    distill.set_defaults(module="distill", handler="run", network="tokenseg")

    # run by fit.py
    fitting = commands.add_parser("fit", help="train from a prepared run (medseg train|distill --prepare-only)")
    fitting.add_argument("prepared", help="the prepared run (.npz)")
    fitting.add_argument("-o", "--output", required=True, help="model file to write (.safetensors)")
    fitting.add_argument("--leave-out", nargs="+", default=[], metavar="NAME",
                         help="training items to leave out (cross-validation folds from one prepared file)")
    fitting.add_argument("--validate-on", nargs="+", metavar="NAME", help="validation cases to use (default: all)")
    fitting.add_argument("--network", metavar="NAME[:PRESET]",
                         help="another network on the same prepared items (default: as prepared)")
    fitting.add_argument("--args", help="that network's constructor arguments as JSON (default: none)")
    fitting.add_argument("--name", help="model name in the card (default: as prepared)")
    fitting.add_argument("--strong-augmentation", action=argparse.BooleanOptionalAction, default=None,
                         help="bias field, lower resolution, wide contrast, larger rotations (default: as prepared)")
    fitting.add_argument("--contrast-enhancement", action=argparse.BooleanOptionalAction, default=None,
                         help="CT: simulated contrast phases on the labelled organs and vessels (default: as prepared)")
    for flag, kind, meaning in (("--epochs", EPOCHS, "epochs"), ("--iterations-per-epoch", EPOCHS, "batches per epoch"),
                                ("--batch-size", BATCH, "crops per batch"), ("--lr", LEARNING_RATE, "AdamW learning rate"),
                                ("--max-minutes", MINUTES, "stop after this many minutes, keeping the best model"),
                                ("--workers", LOADER_WORKERS, "data-loading worker processes"), ("--seed", SEED, "random seed"),
                                ("--weight-average", float, "EMA decay per batch, e.g. 0.995")):
        fitting.add_argument(flag, type=kind, help=f"{meaning} (default: as prepared)")
    fitting.add_argument("--init", metavar="MODEL",
                         help="start from this model file's weights, to fine-tune it (default: as prepared)")
    add_device(fitting)
    fitting.add_argument("--quiet", action="store_true", help="no progress bar")
    fitting.set_defaults(module="fit", handler="run")

    # run by bench.py
    bench = commands.add_parser("bench", help="benchmark networks through the engine on one input")
    bench.add_argument("--networks", required=True,
                       help="comma-separated NAME[:PRESET][/2d|/3d] or model files, e.g. nnunet_plain:3d_fullres")
    source = bench.add_mutually_exclusive_group()
    source.add_argument("--input", default="1x1x256x256x128", help="synthetic input BxCxXxYxZ (B is ignored)")
    source.add_argument("--image", help="a real image file or DICOM folder")
    add_device(bench)
    bench.add_argument("--patch", type=whole(8, 1024), default=128, help="3D tile side for bare networks")
    bench.add_argument("--batch-size", type=BATCH, help="tiles (3D, default 4) or slices (2D, default 32) per pass")
    bench.add_argument("--classes", type=CLASSES, default=14, help="output channels for bare networks")
    bench.add_argument("--repeat", type=whole(1, 1000), default=2, help="timed runs per entry after one warm-up (best kept)")
    bench.add_argument("--fast", action="store_true", help="fewer overlapping tiles, as segment --fast")
    bench.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                       help="replay tiles or slice batches as CUDA graphs where possible (default: for 2D slices only)")
    bench.add_argument("--threads", type=whole(1, 1024), help="CPU threads for torch")
    bench.add_argument("--json", help="write the results here")
    bench.set_defaults(module="bench", handler="run")


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The network, grid and optimisation settings that train and distill share."""
    parser.add_argument("--network", default="monai_unet", help="registered network (medseg models lists them)")
    parser.add_argument("--preset", help="the network's preset (default: its default preset)")
    parser.add_argument("--args", default="{}", help="network constructor arguments as JSON")
    parser.add_argument("--dims", type=int, choices=[2, 3], default=3, help="3D tiles, or 2D axial slices")
    parser.add_argument("--patch-size", type=int, nargs="+", help="tile (3 values) or slice size (2 values) in voxels")
    parser.add_argument("--spacing", type=float, nargs="+", help="model spacing in mm (default: median of data)")
    parser.add_argument("--epochs", type=int, default=50, help="epochs to train (the best on validation is kept)")
    parser.add_argument("--iterations-per-epoch", type=EPOCHS, default=50, help="batches per epoch")
    parser.add_argument("--batch-size", type=int, default=2, help="crops per batch")
    parser.add_argument("--lr", type=LEARNING_RATE, default=2e-3, help="AdamW learning rate (cosine schedule)")
    add_device(parser)
    parser.add_argument("--workers", type=LOADER_WORKERS, default=0, help="data-loading worker processes")
    parser.add_argument("--init", help="start from this model file's weights")
    parser.add_argument("--name", help="model name in the card")
    parser.add_argument("--description", default="", help="model description in the card")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed")
    parser.add_argument("--max-minutes", type=MINUTES, help="stop after this many minutes, keeping the best model")
    parser.add_argument("--weight-average", type=float, metavar="DECAY",
                        help="validate and keep an exponential moving average of the weights, with this decay per "
                             "batch (e.g. 0.995): steadier from epoch to epoch (default: the raw weights)")
    parser.add_argument("--half-weights", action="store_true",
                       help="store float16 weights (half the file); validation Dice is measured on them")
    parser.add_argument("--strong-augmentation", action=argparse.BooleanOptionalAction, default=None,
                        help="bias field, lower resolution, wide contrast, larger rotations, flips where no label is "
                             "sided (default: on for distill, off for train)")
    parser.add_argument("--contrast-enhancement", action="store_true",
                        help="CT: brighten the labelled organs and vessels as arterial and portal-venous phases do, "
                             "so that a model trained on native CT also works on contrast-enhanced CT")
    parser.add_argument("--prepare-only", action="store_true",
                        help="write the prepared run (items on the model grid, targets, validation) to --output "
                             "instead of training: medseg fit trains from it elsewhere, e.g. on a GPU node")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
