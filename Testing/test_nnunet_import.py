"""`medseg import nnunet`: trained nnU-Net v2 models (PlainConvUNet and ResidualEncoderUNet, 2d and 3d_fullres,
both plans generations) from checkpoints written by dynamic_network_architectures in nnU-Net v2's exact results
layout; the imported network computes what the original computes, within 1e-4, and runs through the engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.model.weights import load_model
from authors_xlstm_layout import nnunet_checkpoint
from phantoms import make_phantom

unet = pytest.importorskip("dynamic_network_architectures.architectures.unet")

DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "spleen": 2}, "numTraining": 1,
           "file_ending": ".nii.gz"}
TOPOLOGY = {3: {"kernels": [[3, 3, 3]] * 4, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
                "patch": [16, 32, 32], "spacing": [2.5, 1.5, 1.5]},
            2: {"kernels": [[3, 3]] * 4, "strides": [[1, 1], [2, 2], [2, 2], [2, 2]], "patch": [32, 32],
                "spacing": [1.5, 1.2]}}
STATS = {"0": {"percentile_00_5": -980.0, "percentile_99_5": 1400.0, "mean": 80.0, "std": 210.0}}


def arch_kwargs(architecture: str, dims: int) -> dict:
    blocks = "n_blocks_per_stage" if architecture == "ResidualEncoderUNet" else "n_conv_per_stage"
    return {"n_stages": 4, "features_per_stage": [4, 8, 16, 32], "conv_op": f"torch.nn.modules.conv.Conv{dims}d",
            "kernel_sizes": TOPOLOGY[dims]["kernels"], "strides": TOPOLOGY[dims]["strides"], blocks: [1, 2, 2, 2],
            "n_conv_per_stage_decoder": [1, 1, 1], "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dims}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}


def plans_for(architecture: str, dims: int, generation: str) -> dict:
    configuration = "3d_fullres" if dims == 3 else "2d"
    config = {"data_identifier": f"nnUNetPlans_{configuration}", "batch_size": 2,
              "patch_size": TOPOLOGY[dims]["patch"], "spacing": TOPOLOGY[dims]["spacing"],
              "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False]}
    if generation == "new":
        config["architecture"] = {
            "network_class_name": f"dynamic_network_architectures.architectures.unet.{architecture}",
            "arch_kwargs": arch_kwargs(architecture, dims), "_kw_requires_import": ["conv_op", "norm_op",
                                                                                    "dropout_op", "nonlin"]}
    else:
        config.update({"UNet_class_name": architecture, "UNet_base_num_features": 4, "unet_max_num_features": 32,
                       "conv_kernel_sizes": TOPOLOGY[dims]["kernels"], "pool_op_kernel_sizes": TOPOLOGY[dims]["strides"],
                       "n_conv_per_stage_encoder": [1, 2, 2, 2], "n_conv_per_stage_decoder": [1, 1, 1]})
    return {"dataset_name": "Dataset042_Test", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
            "transpose_backward": [0, 1, 2], "configurations": {configuration: config},
            "foreground_intensity_properties_per_channel": STATS}


def original_network(architecture: str, dims: int) -> torch.nn.Module:
    kwargs = arch_kwargs(architecture, dims)
    kwargs.update(conv_op=getattr(torch.nn, f"Conv{dims}d"), norm_op=getattr(torch.nn, f"InstanceNorm{dims}d"),
                  nonlin=torch.nn.LeakyReLU, dropout_op=None)
    torch.manual_seed(dims)
    network = getattr(unet, architecture)(input_channels=1, num_classes=3, deep_supervision=True, **kwargs)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if "norm" in name:
                parameter.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
    return network


def results_folder(root, architecture: str, dims: int, generation: str):
    configuration = "3d_fullres" if dims == 3 else "2d"
    plans = plans_for(architecture, dims, generation)
    network = original_network(architecture, dims)
    folder = root / "Dataset042_Test" / f"nnUNetTrainer__nnUNetPlans__{configuration}"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(DATASET))
    torch.save(nnunet_checkpoint(network, "nnUNetTrainer", configuration, plans, DATASET),
               folder / "fold_0" / "checkpoint_final.pth")
    network.decoder.deep_supervision = False  # inference: the full-resolution head only
    return folder, network.eval()


@pytest.mark.parametrize("architecture, dims, generation", [("PlainConvUNet", 3, "new"),
                                                            ("ResidualEncoderUNet", 2, "new"),
                                                            ("PlainConvUNet", 2, "old"),
                                                            ("ResidualEncoderUNet", 3, "old")])
def test_the_imported_network_computes_what_nnunets_computes(tmp_path, architecture, dims, generation):
    folder, original = results_folder(tmp_path, architecture, dims, generation)
    output = tmp_path / "imported.safetensors"
    assert main(["import", "nnunet", str(folder), "-o", str(output)]) == 0
    model = load_model(output)
    card = model.card
    assert [label.name for label in card.labels] == ["liver", "spleen"] and card.in_channels == 1
    assert card.network.args["architecture"] == architecture and card.orientation == "none"
    assert (card.normalization.kind, card.normalization.lower, card.normalization.std) == ("ct", -980.0, 210.0)
    assert card.spacing == TOPOLOGY[dims]["spacing"][::-1] and card.patch_size == TOPOLOGY[dims]["patch"]
    image = torch.randn(2, 1, *TOPOLOGY[dims]["patch"])
    with torch.inference_mode():
        expected, ours = original(image), model.network(image)
    assert ours.shape == expected.shape == (2, 3, *TOPOLOGY[dims]["patch"])
    assert float((ours - expected).abs().max()) < 1e-4


def test_an_imported_model_segments_through_the_engine_and_stores_each_tensor_once(tmp_path):
    from safetensors import safe_open

    folder, _ = results_folder(tmp_path, "PlainConvUNet", 3, "new")
    output = tmp_path / "imported.safetensors"
    assert main(["import", "nnunet", str(folder / "fold_0"), "-o", str(output)]) == 0  # the fold folder works too
    with safe_open(str(output), "pt") as handle:
        keys = list(handle.keys())
    assert not any(key.startswith("decoder.encoder.") or ".all_modules." in key for key in keys)
    image, _ = make_phantom(shape=(20, 40, 40))
    result = Segmenter.from_file(output, SegmentOptions(device="cpu")).segment(image)
    assert result.labels.shape == image.grid_shape and result.labels.dtype == np.uint8


def test_other_networks_and_operations_are_refused_in_one_line(tmp_path, capsys):
    folder, _ = results_folder(tmp_path, "PlainConvUNet", 2, "new")
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "my_lab.SwinUNet"
    (folder / "plans.json").write_text(json.dumps(plans))
    assert main(["import", "nnunet", str(folder), "-o", str(tmp_path / "a.safetensors")]) == 2
    assert "the plans name the network 'SwinUNet'" in capsys.readouterr().err
    plans["configurations"]["2d"]["architecture"]["network_class_name"] = "PlainConvUNet"
    plans["configurations"]["2d"]["architecture"]["arch_kwargs"]["nonlin"] = "os.system"
    (folder / "plans.json").write_text(json.dumps(plans))
    assert main(["import", "nnunet", str(folder), "-o", str(tmp_path / "b.safetensors")]) == 2
    assert "nnU-Net operation 'os.system' is not one this importer knows" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.safetensors"))


def test_two_names_of_one_tensor_must_agree():
    from MedSegEfficientLib.errors import ModelFileError
    from MedSegEfficientLib.model.weights import load_weights

    network = original_network("PlainConvUNet", 2)
    tensors = {key: value.clone() for key, value in network.state_dict().items()}
    alias = next(key for key in tensors if key.startswith("decoder.encoder."))
    tensors[alias] += 1.0  # the decoder's copy of an encoder weight, changed
    with pytest.raises(ModelFileError, match="name one tensor of the network but differ"):
        load_weights(original_network("PlainConvUNet", 2), tensors, "checkpoint_final.pth")
    del tensors[alias]  # one name is enough: the other is filled through the alias
    load_weights(original_network("PlainConvUNet", 2), tensors, "checkpoint_final.pth")


def test_several_folds_are_averaged_each_stored_once_and_mirroring_follows_the_checkpoint(tmp_path, capsys):
    from safetensors import safe_open

    folder, first = results_folder(tmp_path, "PlainConvUNet", 3, "new")
    plans = json.loads((folder / "plans.json").read_text())
    second = original_network("PlainConvUNet", 3)
    with torch.no_grad():
        for parameter in second.parameters():
            parameter.mul_(0.5)
    (folder / "fold_3").mkdir()
    checkpoint = nnunet_checkpoint(second, "nnUNetTrainer", "3d_fullres", plans, DATASET)
    checkpoint["inference_allowed_mirroring_axes"] = (1, 2)  # nnU-Net's array axes (z, y, x): y and x
    torch.save(checkpoint, folder / "fold_3" / "checkpoint_final.pth")
    second.decoder.deep_supervision = False
    output = tmp_path / "folds.safetensors"
    assert main(["import", "nnunet", str(folder), "-o", str(output)]) == 0  # every fold, as nnUNetPredictor
    model = load_model(output)
    assert model.card.training["folds"] == ["fold_0", "fold_3"] and model.card.network.args["folds"] == 2
    assert model.card.mirroring == [0, 1, 2] and model.card.nnunet is not None  # fold_0's checkpoint: (0, 1, 2)
    image = torch.randn(1, 1, *TOPOLOGY[3]["patch"])
    with torch.inference_mode():
        expected = (first.eval()(image) + second.eval()(image)) / 2
        assert float((model.network(image) - expected).abs().max()) < 1e-4
    single = tmp_path / "fold3.safetensors"
    assert main(["import", "nnunet", str(folder), "--folds", "3", "--no-mirroring", "-o", str(single)]) == 0
    keys = {}
    for path in (output, single):
        with safe_open(str(path), "pt") as handle:
            keys[path] = list(handle.keys())
    assert len(keys[output]) == 2 * len(keys[single])  # each fold's tensors once
    card = load_model(single).card
    assert card.mirroring == [] and card.training["allowed_mirroring_axes"] == [1, 2]
    mirrored = tmp_path / "fold3m.safetensors"
    assert main(["import", "nnunet", str(folder), "--folds", "3", "-o", str(mirrored)]) == 0
    assert load_model(mirrored).card.mirroring == [0, 1]  # image axes x and y


def test_plans_outside_nnunets_default_pipeline_are_refused(tmp_path, capsys):
    folder, _ = results_folder(tmp_path, "PlainConvUNet", 3, "new")
    plans = json.loads((folder / "plans.json").read_text())
    plans["configurations"]["3d_fullres"]["use_mask_for_norm"] = [True]
    (folder / "plans.json").write_text(json.dumps(plans))
    assert main(["import", "nnunet", str(folder), "-o", str(tmp_path / "a.safetensors")]) == 2
    assert "use_mask_for_norm" in capsys.readouterr().err
    plans["configurations"]["3d_fullres"].update(use_mask_for_norm=[False], resampling_fn_data="my_resampler")
    (folder / "plans.json").write_text(json.dumps(plans))
    assert main(["import", "nnunet", str(folder), "-o", str(tmp_path / "b.safetensors")]) == 2
    assert "my_resampler" in capsys.readouterr().err and not list(tmp_path.glob("*.safetensors"))
