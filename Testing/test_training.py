"""The training path is real: a tiny network trained here on phantoms segments a new phantom."""

from __future__ import annotations


from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.training.datasets import describe_pairs
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.metrics import dice_per_label
from MedSegEfficientLib.training.trainer import TrainConfig, train
from phantoms import make_phantom


def _write_cases(folder, seeds):
    pairs = []
    for seed in seeds:
        image, labels = make_phantom(seed=seed)
        image_path, label_path = folder / f"case{seed}_0000.nii.gz", folder / f"case{seed}.nii.gz"
        write_label_image(image.array, image, image_path)
        write_label_image(labels.array, labels, label_path)
        pairs.append((str(image_path), str(label_path)))
    return pairs


def test_tiny_network_learns_the_phantom(tmp_path):
    pairs = _write_cases(tmp_path, seeds=[1, 2, 3])
    description = describe_pairs(pairs[:2], {1: "big", 2: "small"})
    description.validation = describe_pairs(pairs[2:], {1: "big", 2: "small"}).training
    config = TrainConfig(network="monai_unet", preset="tiny", patch_size=[32, 32, 32], spacing=[2.0, 2.0, 2.5],
                         epochs=5, iterations_per_epoch=20, batch_size=2, learning_rate=1e-2, device="cpu")
    output = tmp_path / "tiny.safetensors"
    train(description, output, config, log=lambda _: None, show_progress=False)
    card = read_card(output)
    assert card.metrics["validation_dice"].keys() == {"big", "small"}
    assert (tmp_path / "tiny.train.log").read_text().count("epoch") >= 5

    unseen_image, unseen_labels = make_phantom(seed=42)
    labels = Segmenter(load_model(output), SegmentOptions(device="cpu")).segment(unseen_image).labels
    scores = dice_per_label([labels], [unseen_labels.array], [1, 2])
    assert scores[1] > 0.9 and scores[2] > 0.9, scores
