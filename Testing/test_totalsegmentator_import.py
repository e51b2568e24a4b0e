"""`medseg import totalsegmentator`: a task split over several nnU-Net models, from a weights folder in
TotalSegmentator's exact layout (``Dataset29x_TotalSegmentator_part*/nnUNetTrainerNoMirroring__nnUNetPlans__
3d_fullres/fold_0/checkpoint_final.pth``), into one multi-part model file. The parts are the parity model's two
folds (trained by nnU-Net's own code on the sample CT, Testing/data/nnunet_parity), one per part, with part names
from TotalSegmentator's organ and vertebrae maps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.importers.nnunet_v2 import import_nnunet
from MedSegEfficientLib.importers.totalsegmentator import import_totalsegmentator
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.io.images import read_image
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.volume import Volume

PARITY = Path(__file__).resolve().parent / "data" / "nnunet_parity" / "Dataset900_MedSegParity" / \
    "nnUNetTrainerNoDA__nnUNetPlansSmall__3d_fullres"
TRAINED = "nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres"
PART_LABELS = {  # TotalSegmentator's names (map_to_binary.class_map_5_parts), four per part as the weights have
    "Dataset291_TotalSegmentator_part1_organs_1559subj": ("fold_0", ["spleen", "kidney_right", "kidney_left", "liver"]),
    "Dataset292_TotalSegmentator_part2_vertebrae_1532subj": ("fold_1", ["sacrum", "vertebrae_S1", "vertebrae_L5",
                                                                        "vertebrae_L4"]),
}
pytestmark = pytest.mark.skipif(not PARITY.is_dir(), reason="the parity model is not in this checkout")


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """TotalSegmentator's weights folder with the first two parts of its ``total`` task."""
    root = tmp_path_factory.mktemp("totalsegmentator") / "nnunet" / "results"
    for dataset, (fold, names) in PART_LABELS.items():
        trained = root / dataset / TRAINED
        (trained / "fold_0").mkdir(parents=True)
        shutil.copy(PARITY / "plans.json", trained / "plans.json")
        shutil.copy(PARITY / fold / "checkpoint_final.pth", trained / "fold_0" / "checkpoint_final.pth")
        meta = json.loads((PARITY / "dataset.json").read_text())
        meta["labels"] = {"background": 0, **{name: value for value, name in enumerate(names, 1)}}
        (trained / "dataset.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def imported(weights, tmp_path_factory) -> Path:
    return import_totalsegmentator(weights, tmp_path_factory.mktemp("model") / "total.safetensors", "291,292")


@pytest.fixture(scope="module")
def ras_ct(samples) -> Volume:
    """The sample CT cut to the liver's region and turned to RAS, as TotalSegmentator hands images to nnU-Net."""
    image = sitk.DICOMOrient(sitk.ReadImage(str(samples["example_ct"])), "RAS")
    size = image.GetSize()
    image = image[size[0] // 4: 3 * size[0] // 4, size[1] // 4: 3 * size[1] // 4, :]
    return Volume(sitk.GetArrayFromImage(image), image.GetSpacing(), image.GetOrigin(),
                  np.asarray(image.GetDirection()).reshape(3, 3))


def test_one_file_holds_the_parts_with_totalsegmentators_numbering_and_codes(imported):
    card = read_card(imported)
    assert [len(part.labels) for part in card.parts] == [4, 4]
    merged = {label.name: label.value for label in card.labels}
    assert merged == {name: value for value, name in enumerate(
        [n for _, names in PART_LABELS.values() for n in names], 1)}
    liver = next(label for label in card.labels if label.name == "liver")
    assert liver.type == ["SCT", "10200004", "Liver"] and liver.category[1] == "123037004"
    kidney = next(label for label in card.labels if label.name == "kidney_left")
    assert kidney.modifier == ["SCT", "7771000", "Left"]
    for part in card.parts:  # each part runs as TotalSegmentator runs it
        assert part.orientation == "RAS" and part.mirroring == [] and part.nnunet is not None
    assert card.training["datasets"][0].startswith("Dataset291_TotalSegmentator_part1_organs")
    from safetensors import safe_open
    with safe_open(str(imported), "pt") as stored:
        names = list(stored.keys())
    assert any(n.startswith("parts.0.") for n in names) and any(n.startswith("parts.1.") for n in names)
    assert all(n.startswith("parts.") for n in names)


def test_merged_labels_are_each_part_alone_written_in_part_order(imported, weights, ras_ct, tmp_path):
    merged = Segmenter.from_file(imported, SegmentOptions(device="cpu")).segment(ras_ct).labels
    expected = np.zeros(ras_ct.grid_shape, dtype=np.uint8)
    offset = 0
    for dataset, (_, names) in PART_LABELS.items():  # TotalSegmentator's merge: later parts write over earlier
        single = import_nnunet(weights / dataset / TRAINED, tmp_path / f"{dataset}.safetensors", mirroring=False)
        part = Segmenter.from_file(single, SegmentOptions(device="cpu")).segment(ras_ct).labels
        np.copyto(expected, (part + offset).astype(np.uint8), where=part != 0)
        offset += len(names)
    assert (expected == 4).sum() > 1000 and (expected == 8).sum() > 1000  # each part's 'liver' kept somewhere
    assert np.array_equal(merged, expected)


def test_an_image_stored_in_another_orientation_gets_the_same_labels(imported, ras_ct):
    """The parts see RAS arrays whatever the input's order: a permuted, flipped copy gets the same labels."""
    segmenter = Segmenter.from_file(imported, SegmentOptions(device="cpu"))
    turned = sitk.DICOMOrient(_image(ras_ct, ras_ct.array), "PIL")
    turned_volume = Volume(sitk.GetArrayFromImage(turned), turned.GetSpacing(), turned.GetOrigin(),
                           np.asarray(turned.GetDirection()).reshape(3, 3))
    labels = segmenter.segment(turned_volume).labels
    back = sitk.DICOMOrient(_image(turned_volume, labels), "RAS")
    assert np.array_equal(sitk.GetArrayFromImage(back), segmenter.segment(ras_ct).labels)


def _image(volume: Volume, array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(volume.spacing)
    image.SetOrigin(volume.origin)
    image.SetDirection(volume.direction.flatten().tolist())
    return image


def test_progress_is_shared_between_the_parts(imported, ras_ct):
    seen: list[tuple[float, str]] = []
    Segmenter.from_file(imported, SegmentOptions(device="cpu")).segment(ras_ct, lambda f, s: seen.append((f, s)))
    fractions = [fraction for fraction, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any(s.startswith("part 1/2") for _, s in seen) and any(s.startswith("part 2/2") for _, s in seen)
    assert max(f for f, s in seen if s.startswith("part 1/2")) <= 0.5


def test_the_command_line_imports_and_segments(weights, samples, tmp_path, capsys):
    model = tmp_path / "total.safetensors"
    assert main(["import", "totalsegmentator", str(weights), "--task", "291,292", "-o", str(model)]) == 0
    output = tmp_path / "labels.nii.gz"
    assert main(["segment", str(samples["example_ct"]), "-o", str(output), "--model", str(model),
                 "--device", "cpu"]) == 0
    labels = read_image(output).array
    assert set(np.unique(labels)) <= set(range(9)) and (labels == 4).sum() > 1000


def test_a_missing_part_is_named(weights, tmp_path):
    with pytest.raises(MedSegError, match=r"no Dataset293_\* folder .*totalseg_download_weights"):
        import_totalsegmentator(weights, tmp_path / "m.safetensors", "total")
    assert not (tmp_path / "m.safetensors").exists()


def test_unknown_tasks_and_ambiguous_folders_are_refused(weights, tmp_path):
    with pytest.raises(MedSegError, match="unknown TotalSegmentator task 'everything'"):
        import_totalsegmentator(weights, tmp_path / "m.safetensors", "everything")
    with pytest.raises(MedSegError, match="different dataset ids"):
        import_totalsegmentator(weights, tmp_path / "m.safetensors", "291,291")
    dataset = weights / "Dataset291_TotalSegmentator_part1_organs_1559subj"
    second = dataset / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    shutil.copytree(dataset / TRAINED, second)
    try:
        with pytest.raises(MedSegError, match="must hold one <Trainer>__<Plans>__3d_fullres folder"):
            import_totalsegmentator(weights, tmp_path / "m.safetensors", "291,292")
    finally:
        shutil.rmtree(second)
