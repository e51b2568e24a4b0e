"""Importing the xLSTM-UNet authors' nnU-Net v2 trained model folders: a checkpoint written in their format
(their key names and shapes, duplicated decoder.encoder tensors, numpy numbers in the logs) must import, run
and compute what their layout computes; broken or hostile folders are refused with nothing written."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from authors_xlstm_layout import AuthorsNetwork, nnunet_checkpoint
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.inference.engine import Segmenter, SegmentOptions
from MedSegEfficientLib.importers.xlstm_unet_nnunet import rename_weights
from MedSegEfficientLib.volume import Volume

TOPOLOGY = {3: {"patch_size": [16, 32, 32], "spacing": [2.5, 0.8, 0.7],
                "conv_kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
                "pool_op_kernel_sizes": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]},
            2: {"patch_size": [40, 24], "spacing": [0.8, 0.7],
                "conv_kernel_sizes": [[3, 3]] * 4, "pool_op_kernel_sizes": [[1, 1], [2, 2], [2, 2], [2, 2]]}}
FOREGROUND = {"0": {"mean": 60.0, "std": 140.0, "percentile_00_5": -950.0, "percentile_99_5": 1400.0,
                    "median": 50.0, "min": -1024.0, "max": 3000.0}}
DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2},
           "numTraining": 3, "file_ending": ".nii.gz"}


def write_results_folder(root, variant: str, dims: int, seed: int = 0):
    configuration = "3d_fullres" if dims == 3 else "2d"
    config = {**TOPOLOGY[dims], "UNet_base_num_features": 8, "unet_max_num_features": 64,
              "n_conv_per_stage_encoder": [2, 2, 2, 2], "n_conv_per_stage_decoder": [2, 2, 2],
              "normalization_schemes": ["CTNormalization"], "batch_size": 2, "UNet_class_name": "PlainConvUNet"}
    plans = {"dataset_name": "Dataset702_AbdomenMR", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
             "configurations": {configuration: config}, "foreground_intensity_properties_per_channel": FOREGROUND}
    trainer = f"nnUNetTrainerUxLSTM{variant.capitalize()}"
    torch.manual_seed(seed)
    # The authors' override: deeper half single blocks (encoder [2, 2, 1, 1], decoder [2, 2, 1]).
    network = AuthorsNetwork(dims, variant, 1, 3, [8, 16, 32, 64], config["conv_kernel_sizes"],
                             config["pool_op_kernel_sizes"], [2, 2, 1, 1], [2, 2, 1], config["patch_size"])
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if "norm" in name or "gate" in name:
                parameter.normal_(0.0, 0.3).add_(1.0 if name.endswith("norm1.weight") else 0.0)
    folder = root / "Dataset702_AbdomenMR" / f"{trainer}__nnUNetPlans__{configuration}"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(DATASET))
    torch.save(nnunet_checkpoint(network, trainer, configuration, plans, DATASET),
               folder / "fold_0" / "checkpoint_final.pth")
    return folder, network.eval()


@pytest.mark.parametrize("variant, dims", [("bot", 3), ("enc", 3), ("bot", 2), ("enc", 2)])
def test_imported_model_computes_what_the_authors_layout_computes(tmp_path, variant, dims):
    folder, authors = write_results_folder(tmp_path, variant, dims)
    output = tmp_path / "imported.safetensors"
    assert main(["import", "xlstm-unet-nnunet", str(folder), "-o", str(output)]) == 0
    model = load_model(output)
    assert model.card.network.preset == f"{variant}_{dims}d"
    image = torch.randn(2, 1, *TOPOLOGY[dims]["patch_size"])
    with torch.inference_mode():
        expected, ours = authors(image), model.network(image)
    assert ours.shape == expected.shape == (2, 3, *TOPOLOGY[dims]["patch_size"])
    torch.testing.assert_close(ours, expected, atol=2e-4, rtol=1e-4)


@pytest.mark.parametrize("given", ["trainer folder", "fold folder"])
def test_the_process_weight_layout_imports(tmp_path, given):
    """The authors' README: download, then process_weight.py copies each checkpoint to
    <Trainer>__nnUNetPlans__<config>/fold_<dataset id>/checkpoint_final.pth and the preprocessed folder's JSON
    files (nnUNetPlans.json, dataset.json, dataset_fingerprint.json) into that fold folder."""
    folder, authors = write_results_folder(tmp_path, "bot", 2)
    fold = folder / "fold_702"
    (folder / "fold_0").rename(fold)
    (folder / "plans.json").rename(fold / "nnUNetPlans.json")
    (folder / "dataset.json").rename(fold / "dataset.json")
    (fold / "dataset_fingerprint.json").write_text("{}")
    output = tmp_path / "imported.safetensors"
    source = folder if given == "trainer folder" else fold
    assert main(["import", "xlstm-unet-nnunet", str(source), "-o", str(output)]) == 0
    image = torch.randn(1, 1, *TOPOLOGY[2]["patch_size"])
    with torch.inference_mode():
        torch.testing.assert_close(load_model(output).network(image), authors(image), atol=2e-4, rtol=1e-4)


def test_the_2d_presets_are_the_authors_network():
    """No skip into the last 2D decoder stage (the authors' 2D decoder has none): the preset and the import agree."""
    from MedSegEfficientLib.networks import build_network

    for variant in ("bot", "enc"):
        preset = build_network("xlstm_unet", 2, 1, 3, preset=f"{variant}_2d")
        with_skip = build_network("xlstm_unet", 2, 1, 3, preset=f"{variant}_2d", args={"plan": {
            **_default_2d_plan(), "full_resolution_skip": True}})
        assert not preset.full_resolution_skip and with_skip.full_resolution_skip
        assert sum(p.numel() for p in with_skip.parameters()) > sum(p.numel() for p in preset.parameters())
    assert build_network("xlstm_unet", 3, 1, 3, preset="bot_3d").full_resolution_skip


def _default_2d_plan():
    from MedSegEfficientLib.networks.mlstm.xlstm_unet import default_plan

    return default_plan(2)


def test_card_carries_the_plans_geometry_normalisation_and_labels(tmp_path):
    folder, _ = write_results_folder(tmp_path, "enc", 3)
    output = tmp_path / "m.safetensors"
    assert main(["import", "xlstm-unet-nnunet", str(folder), "-o", str(output), "--name", "Abdomen MR"]) == 0
    card = load_model(output).card
    assert card.name == "Abdomen MR" and card.orientation == "none"
    assert card.spacing == [0.7, 0.8, 2.5]  # plans list (z, y, x); cards (x, y, z)
    assert card.patch_size == [16, 32, 32]
    assert (card.normalization.kind, card.normalization.lower, card.normalization.upper) == ("ct", -950.0, 1400.0)
    assert (card.normalization.mean, card.normalization.std) == (60.0, 140.0)
    assert [(label.value, label.name) for label in card.labels] == [(1, "liver"), (2, "spleen")]
    assert card.network.args["plan"]["blocks"] == [2, 2, 1, 1]
    assert card.network.args["plan"]["decoder_blocks"] == [2, 2, 1]


def test_imported_2d_model_tiles_slices_through_the_engine(tmp_path):
    folder, _ = write_results_folder(tmp_path, "bot", 2)
    output = tmp_path / "m.safetensors"
    assert main(["import", "xlstm-unet-nnunet", str(folder), "-o", str(output)]) == 0
    model = load_model(output)
    assert model.card.slice_fit == "tile"
    volume = Volume(np.random.default_rng(0).normal(0, 300, (3, 50, 45)).astype(np.float32),
                    spacing=(0.7, 0.8, 3.0))
    labels = Segmenter(model, SegmentOptions(device="cpu")).segment(volume).labels
    assert labels.shape == (3, 50, 45) and labels.max() <= 2


def test_every_tensor_is_used_or_a_checked_duplicate(tmp_path):
    folder, authors = write_results_folder(tmp_path, "enc", 3)
    weights = authors.state_dict()
    renamed = rename_weights(weights)
    dropped = [k for k in weights if k.startswith("decoder.encoder.") or ".all_modules." in k
               or k.startswith("encoder.xlstm_layers.3.norm.")]
    assert len(renamed) == len(weights) - len(dropped)
    assert any(k.startswith("decoder.encoder.") for k in dropped) and any(".all_modules." in k for k in dropped)


def test_a_duplicate_that_differs_is_refused_and_nothing_is_written(tmp_path, capsys):
    folder, authors = write_results_folder(tmp_path, "bot", 3)
    checkpoint_path = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    checkpoint["network_weights"]["decoder.encoder.stem.0.conv1.weight"] = torch.zeros_like(
        checkpoint["network_weights"]["encoder.stem.0.conv1.weight"])
    torch.save(checkpoint, checkpoint_path)
    output = tmp_path / "m.safetensors"
    assert main(["import", "xlstm-unet-nnunet", str(folder), "-o", str(output)]) == 2
    assert "differ" in capsys.readouterr().err and not output.exists()


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_checkpoint_with_pickled_objects_is_refused(tmp_path, capsys):
    folder, _ = write_results_folder(tmp_path, "bot", 3)
    checkpoint_path = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    checkpoint["logging"]["hook"] = _Payload()
    torch.save(checkpoint, checkpoint_path, pickle_module=pickle)
    output = tmp_path / "m.safetensors"
    assert main(["import", "xlstm-unet-nnunet", str(folder), "-o", str(output)]) == 2
    captured = capsys.readouterr()
    assert "never loaded" in captured.err and "this must never run" not in captured.out and not output.exists()


def test_folder_problems_are_named(tmp_path, capsys):
    folder, _ = write_results_folder(tmp_path, "bot", 3)
    (folder / "fold_1").mkdir()  # a fold whose training never finished
    output = tmp_path / "m.safetensors"
    assert main(["import", "xlstm-unet-nnunet", str(folder), "--folds", "0,1", "-o", str(output)]) == 2
    assert "no checkpoint_final.pth" in capsys.readouterr().err and not output.exists()
    assert main(["import", "xlstm-unet-nnunet", str(folder), "--folds", "0,7", "-o", str(output)]) == 2
    assert "no fold_7" in capsys.readouterr().err and not output.exists()
    (folder / "plans.json").unlink()
    assert main(["import", "xlstm-unet-nnunet", str(folder), "--fold", "0", "-o", str(output)]) == 2
    assert "plans.json not found" in capsys.readouterr().err and not output.exists()
    (folder / "plans.json").write_text(json.dumps({"configurations": {"3d_fullres": {"patch_size": [8, 8, 8]}}}))
    assert main(["import", "xlstm-unet-nnunet", str(folder), "--fold", "0", "-o", str(output)]) == 2
    assert "lacks 'conv_kernel_sizes'" in capsys.readouterr().err
    checkpoint_path = folder / "fold_0" / "checkpoint_final.pth"
    checkpoint = torch.load(checkpoint_path, weights_only=False)
    checkpoint["trainer_name"] = "nnUNetTrainer"  # a plain nnU-Net, not the authors' trainer
    torch.save(checkpoint, checkpoint_path)
    assert main(["import", "xlstm-unet-nnunet", str(folder), "--fold", "0", "-o", str(output)]) == 2
    assert "not an xLSTM-UNet trainer" in capsys.readouterr().err and not output.exists()
