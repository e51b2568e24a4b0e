"""Reading an nnU-Net v2 results folder: plans.json, dataset.json and a fold's checkpoint.

Layouts: nnU-Net v2's ``<Dataset>/<Trainer>__<Plans>__<configuration>/{plans.json, dataset.json,
fold_<f>/checkpoint_final.pth}``, and the one the xLSTM-UNet authors' ``process_weight.py`` makes from their
downloads: ``<Trainer>__nnUNetPlans__<configuration>/fold_<dataset id>/{checkpoint_final.pth, nnUNetPlans.json,
dataset.json, dataset_fingerprint.json}`` (the JSON files copied from nnUNet_preprocessed into the fold folder).
Either the trainer folder or the fold folder itself may be given.
The checkpoint is a dict with ``network_weights``, ``trainer_name``, ``init_args`` and training logs (numpy
numbers); it is read with the restricted loader, so nothing in it can run code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from MedSegEfficientLib.model.card import ModelCard, NetworkInfo, Normalization
from MedSegEfficientLib.model.nnunet_mode import NnUNetMode, Resampling, parse_nnunet_mode
from MedSegEfficientLib.model.pth_import import load_state_dict_safely
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.training.datasets import dataset_modality, parse_labels

CHECKPOINT_NAMES = ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth")


@dataclass
class NnUNetResult:
    folder: Path
    trainer: str
    configuration: str
    plans: dict[str, Any]
    config: dict[str, Any]  # the configuration's plan, inheritance resolved
    dataset: dict[str, Any]
    checkpoint_paths: list[Path]  # one per fold, in the order given
    fold_weights: list[dict[str, torch.Tensor]]
    mirror_axes: tuple[int, ...] | None  # the checkpoint's inference_allowed_mirroring_axes (array axes)

    @property
    def spatial_dims(self) -> int:
        return len(self.config["patch_size"])

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoint_paths[0]

    @property
    def weights(self) -> dict[str, torch.Tensor]:
        return self.fold_weights[0]


def read_results_folder(folder: str | Path, folds: str | list[str] | None = None,
                        checkpoint: str | None = None) -> NnUNetResult:
    """``folds``: one fold, several (averaged, as nnUNetPredictor does), or None for every ``fold_<n>`` that holds
    the checkpoint (nnU-Net's default), else ``fold_all``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MedSegError(f"not a folder: {folder}")
    if isinstance(folds, str):
        folds = [part.strip() for part in folds.split(",") if part.strip()]
    if folder.name.startswith("fold_") and not folds:  # the fold folder itself was given
        folder, folds = folder.parent, [folder.name[len("fold_"):]]
    paths = _find_checkpoints(folder, folds, checkpoint)
    fold_folder = paths[0].parent
    plans = _read_json(_first_existing([folder / "plans.json", fold_folder / "plans.json",
                                        fold_folder / "nnUNetPlans.json", folder / "nnUNetPlans.json"]))
    dataset = _read_json(_first_existing([folder / "dataset.json", fold_folder / "dataset.json"]))
    states = [load_state_dict_safely(path, numpy_values=True) for path in paths]
    fold_weights = []
    for path, state in zip(paths, states):
        weights = state.get("network_weights")
        if not isinstance(weights, dict) or not weights:
            raise MedSegError(f"{path} has no 'network_weights': not an nnU-Net v2 checkpoint")
        fold_weights.append({k: v for k, v in weights.items() if isinstance(v, torch.Tensor)})
    _check_same_network(paths, fold_weights)
    state = states[0]
    parts = folder.name.split("__")
    trainer = str(state.get("trainer_name") or parts[0])
    init_args = state.get("init_args") if isinstance(state.get("init_args"), dict) else {}
    configuration = str(init_args.get("configuration") or (parts[-1] if len(parts) == 3 else ""))
    axes = state.get("inference_allowed_mirroring_axes")
    mirror_axes = tuple(int(a) for a in axes) if isinstance(axes, (list, tuple)) and \
        all(isinstance(a, int) and not isinstance(a, bool) for a in axes) else None
    return NnUNetResult(folder, trainer, configuration, plans, configuration_plan(plans, configuration), dataset,
                        paths, fold_weights, mirror_axes)


def _check_same_network(paths: list[Path], fold_weights: list[dict[str, torch.Tensor]]) -> None:
    first = {key: tuple(tensor.shape) for key, tensor in fold_weights[0].items()}
    for path, weights in zip(paths[1:], fold_weights[1:]):
        if {key: tuple(tensor.shape) for key, tensor in weights.items()} != first:
            raise MedSegError(f"{path.parent.name}'s network differs from {paths[0].parent.name}'s: folds of one "
                              "model only")


def configuration_plan(plans: dict[str, Any], name: str) -> dict[str, Any]:
    configurations = plans.get("configurations", {})
    if name not in configurations:
        raise MedSegError(f"plans.json has no configuration '{name}' (has: {', '.join(configurations) or 'none'})")
    config = dict(configurations[name])
    seen = {name}
    while "inherits_from" in config:  # e.g. 3d_cascade_fullres inherits from 3d_fullres
        parent = config.pop("inherits_from")
        if parent in seen or parent not in configurations:
            raise MedSegError(f"plans.json configuration '{name}' inherits from unknown or circular '{parent}'")
        seen.add(parent)
        config = {**configurations[parent], **config}
    if "patch_size" not in config:
        raise MedSegError(f"plans.json configuration '{name}' has no patch_size")
    return config


def network_topology(config: dict[str, Any]) -> dict[str, Any]:
    """Widths, kernels, strides and convolutions per stage, from either plans.json generation."""
    arch = config.get("architecture", {}).get("arch_kwargs")
    if arch:  # nnU-Net >= 2.3
        return {"features": list(arch["features_per_stage"]), "kernels": arch["kernel_sizes"],
                "strides": arch["strides"], "encoder": list(arch["n_conv_per_stage"]),
                "decoder": list(arch["n_conv_per_stage_decoder"])}
    try:
        kernels = config["conv_kernel_sizes"]
        base, widest = config["UNet_base_num_features"], config["unet_max_num_features"]
        return {"features": [min(base * 2 ** s, widest) for s in range(len(kernels))], "kernels": kernels,
                "strides": config["pool_op_kernel_sizes"], "encoder": list(config["n_conv_per_stage_encoder"]),
                "decoder": list(config["n_conv_per_stage_decoder"])}
    except KeyError as missing:
        raise MedSegError(f"plans.json configuration lacks {missing}") from None


def intensity_normalization(plans: dict[str, Any], config: dict[str, Any]) -> Normalization:
    """nnU-Net's schemes: CT (clip to the dataset's 0.5/99.5 percentiles, then its mean and std), z-score per image."""
    schemes = set(config.get("normalization_schemes", []))
    if len(schemes) != 1:
        raise MedSegError(f"channels with different normalisation schemes {sorted(schemes)} are not supported")
    scheme = schemes.pop()
    if scheme == "CTNormalization":
        stats = plans.get("foreground_intensity_properties_per_channel", {}).get("0")
        if not stats:
            raise MedSegError("plans.json lacks foreground_intensity_properties_per_channel for CT normalisation")
        return Normalization(kind="ct", lower=float(stats["percentile_00_5"]), upper=float(stats["percentile_99_5"]),
                             mean=float(stats["mean"]), std=max(float(stats["std"]), 1e-8))
    if scheme == "ZScoreNormalization":
        return Normalization(kind="zscore")
    if scheme == "NoNormalization":
        return Normalization(kind="none")
    raise MedSegError(f"nnU-Net normalisation scheme '{scheme}' is not supported (CT, ZScore or none)")


def imported_card(result: NnUNetResult, network: NetworkInfo, title: str, name: str | None = None,
                  mirroring: bool = True) -> ModelCard:
    """The card of an imported nnU-Net model: labels from dataset.json, normalisation, spacing and tile from the
    plans; no reorientation, as nnU-Net runs on the array as stored; nnU-Net's own pipeline (``nnunet``), with
    mirroring along the checkpoint's allowed axes unless ``mirroring`` is off; several folds averaged."""
    dims, config = result.spatial_dims, result.config
    if result.plans.get("transpose_forward", [0, 1, 2]) != [0, 1, 2]:
        raise MedSegError(f"plans.json transpose_forward {result.plans['transpose_forward']} is not supported "
                          "(only models planned without axis transposition import)")
    channels = result.dataset.get("channel_names") or result.dataset.get("modality") or {"0": "CT"}
    patch = [int(p) for p in config["patch_size"]]
    spacing = [float(s) for s in config["spacing"]][::-1] if "spacing" in config else None  # (z, y, x) -> (x, y, z)
    if dims == 2 and spacing:
        spacing = spacing[:2]  # in-plane (x, y); the slices keep theirs
    dataset_name = result.plans.get("dataset_name", result.folder.parent.name)
    if any(config.get("use_mask_for_norm") or []):
        raise MedSegError("the plans normalise inside the non-zero mask only (use_mask_for_norm), which nnU-Net's "
                          "mode here does not do yet")
    folds = [path.parent.name for path in result.checkpoint_paths]
    if len(folds) > 1:
        network = NetworkInfo(network.name, network.preset, {**network.args, "folds": len(folds)})
    axes = result.mirror_axes if mirroring and result.mirror_axes else ()
    image_axes = sorted((dims - 1) - axis for axis in axes if 0 <= axis < dims)
    return ModelCard(
        name=name or f"{dataset_name} {title} {dims}D (imported)", network=network,
        spatial_dims=dims, in_channels=len(channels), labels=parse_labels(result.dataset),
        modality=dataset_modality(result.dataset), normalization=intensity_normalization(result.plans, config),
        description=f"Imported from {result.trainer} ({result.configuration}), {' + '.join(folds)}"
                    f"{' averaged' if len(folds) > 1 else ''}; run through nnU-Net's own pipeline.",
        spacing=spacing, orientation="none", patch_size=patch, slice_fit="tile" if dims == 2 else "resize",
        training={"source": "nnU-Net v2 results folder", "trainer": result.trainer,
                  "configuration": result.configuration, "checkpoint": result.checkpoint_path.name, "folds": folds,
                  "allowed_mirroring_axes": list(result.mirror_axes or [])},
        mirroring=image_axes, nnunet=nnunet_mode(config),
    )


def nnunet_mode(config: dict[str, Any]) -> NnUNetMode:
    """nnU-Net's pipeline as the configuration plans it: its splines for the image and for the class scores."""
    parts = {}
    for key, default in (("data", Resampling()), ("probabilities", Resampling(order=1))):
        function = config.get(f"resampling_fn_{key}", "resample_data_or_seg_to_shape")
        if function != "resample_data_or_seg_to_shape":
            raise MedSegError(f"the plans resample with '{function}'; nnU-Net's default "
                              "resample_data_or_seg_to_shape imports")
        kwargs = config.get(f"resampling_fn_{key}_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise MedSegError(f"plans.json resampling_fn_{key}_kwargs is not an object")
        parts[key] = {"order": kwargs.get("order", default.order), "order_z": kwargs.get("order_z", default.order_z),
                      "force_separate_z": kwargs.get("force_separate_z", default.force_separate_z)}
    problems: list[str] = []
    mode = parse_nnunet_mode({"tile_step": 0.5, "data": parts["data"], "scores": parts["probabilities"]}, problems)
    if mode is None:
        raise MedSegError("plans.json resampling: " + "; ".join(problems))
    return mode


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MedSegError(f"{path.name} not found in {path.parent} (expected an nnU-Net trained model folder)") from None
    except (OSError, json.JSONDecodeError) as error:
        raise MedSegError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise MedSegError(f"{path} is not a JSON object")
    return data


def _first_existing(candidates: list[Path]) -> Path:
    """The first file that exists; else the first name, whose read then says it is missing."""
    return next((path for path in candidates if path.is_file()), candidates[0])


def _find_checkpoints(folder: Path, folds: list[str] | None, name: str | None) -> list[Path]:
    present = sorted((p for p in folder.glob("fold_*") if p.is_dir()), key=lambda p: p.name)
    names = [name] if name else list(CHECKPOINT_NAMES)
    if folds:
        chosen = []
        for fold in dict.fromkeys(folds):
            if not (folder / f"fold_{fold}").is_dir():
                raise MedSegError(f"no fold_{fold} in {folder} (has: {', '.join(p.name for p in present) or 'none'})")
            chosen.append(folder / f"fold_{fold}")
    else:  # nnUNetPredictor's default: every numbered fold with the checkpoint, fold_all only when alone
        numbered = [p for p in present if p.name != "fold_all" and _checkpoint_in(p, names)]
        chosen = numbered or present
        if not chosen:
            raise MedSegError(f"no fold_* folder in {folder}")
    found = []
    for fold_folder in chosen:
        path = _checkpoint_in(fold_folder, names)
        if path is None:
            raise MedSegError(f"no {' or '.join(names)} in {fold_folder}")
        found.append(path)
    # Without a name, every fold must offer the same checkpoint kind: final with final, never final with best.
    if len({path.name for path in found}) > 1:
        raise MedSegError(f"the folds hold different checkpoints ({', '.join(p.parent.name + '/' + p.name for p in found)}): "
                          "name one with --checkpoint")
    return found


def _checkpoint_in(fold_folder: Path, names: list[str]) -> Path | None:
    return next((fold_folder / candidate for candidate in names if (fold_folder / candidate).is_file()), None)
