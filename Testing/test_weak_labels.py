"""A run says what its model's card says it does poorly: labels whose held-out Dice is low, labels never validated."""

from __future__ import annotations

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.io.images import write_label_image
from MedSegEfficientLib.model.weak_labels import WEAK_DICE, weak_labels_notice
from MedSegEfficientLib.model.weights import load_model
from models_for_tests import threshold_card, write_threshold_model
from phantoms import make_phantom


def _metrics(big, small):
    return {"validation_dice": {"big": big, "small": small}, "validation_mean_dice": 0.5,
            "validation_cases": ["scan_7"]}


def test_weak_and_unvalidated_labels_are_named_and_strong_ones_are_not():
    notice = weak_labels_notice(threshold_card(metrics=_metrics(0.12, 0.91)))
    assert "big 0.12" in notice and "small" not in notice and "scan_7" in notice
    notice = weak_labels_notice(threshold_card(metrics=_metrics(0.93, None)))
    assert "small not in its validation scan" in notice and "big" not in notice
    assert weak_labels_notice(threshold_card(metrics=_metrics(WEAK_DICE, 0.9))) is None  # at the floor: not weak
    assert weak_labels_notice(threshold_card()) is None  # a card that states no validation claims nothing


def test_every_run_of_such_a_model_carries_the_notice(tmp_path):
    model = write_threshold_model(tmp_path / "m.safetensors", metrics=_metrics(0.2, 0.9))
    segmenter = Segmenter(load_model(model), SegmentOptions(device="cpu"))
    image, _ = make_phantom(seed=1)
    for _ in range(2):  # each run's report, not only the first
        notices = segmenter.segment(image).report.notices
        assert sum("big 0.20" in notice for notice in notices) == 1, notices


def test_medseg_segment_prints_it_as_a_note(tmp_path, capsys):
    model = write_threshold_model(tmp_path / "m.safetensors", metrics=_metrics(0.2, 0.9))
    image, _ = make_phantom(seed=1)
    source = tmp_path / "ct.nii.gz"
    write_label_image(image.array, image, source)
    code = main(["segment", str(source), "-o", str(tmp_path / "out.seg.nrrd"), "--model", str(model),
                 "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err
    assert code == 0 and "medseg: note: model 'intensity bands'" in err and "big 0.20" in err, err
