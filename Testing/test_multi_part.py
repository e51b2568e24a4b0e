"""Multi-part models (model/multi_part.py, inference/multi_part.py): the card's checks, the weights stored once per
part, and the merge in part order through the engine, with the test network whose output is known."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from MedSegEfficientLib.errors import MedSegError, ModelFileError
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.model.card import LabelInfo, ModelCard, NetworkInfo
from MedSegEfficientLib.model.weights import build_from_card, load_model, save_model
from models_for_tests import LABELS, threshold_card
from phantoms import make_phantom


def two_parts() -> ModelCard:
    """Part 1 finds 'big' and 'small'; part 2 finds the same voxels and names the first 'organ'."""
    first = threshold_card()
    second = threshold_card(labels=[LabelInfo(1, "organ"), LabelInfo(2, "small")])
    merged = [LabelInfo(1, "big"), LabelInfo(2, "small"), LabelInfo(3, "organ")]
    return ModelCard(name="two parts", network=NetworkInfo("parts"), spatial_dims=3, in_channels=1, labels=merged,
                     orientation="none", parts=[first, second])


def card_problems(data: dict) -> str:
    with pytest.raises(ModelFileError) as error:
        ModelCard.from_dict(data)
    return str(error.value)


def test_the_card_round_trips_with_its_parts():
    card = two_parts()
    again = ModelCard.from_dict(card.to_dict())
    assert again == card and len(again.parts) == 2 and again.out_channels == 4


def test_a_part_label_missing_from_the_merged_map_is_named():
    data = two_parts().to_dict()
    data["labels"] = data["labels"][:2]
    assert "parts[1]: labels ['organ'] are not in the merged label map" in card_problems(data)


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["parts"][0].update(parts=[d["parts"][1]]), "parts[0]: a part cannot have parts"),
    (lambda d: d.update(network={"name": "unet"}), "names the network 'parts', not 'unet'"),
    (lambda d: d.update(spacing=[1.0, 1.0, 1.0]), "field 'spacing' belongs in each part"),
    (lambda d: d.update(parts=[]), "network 'parts' needs the field 'parts'"),
    (lambda d: d["parts"][1].update(spatial_dims=2, spacing=[1.0, 1.0], patch_size=[16, 16]),
     "parts[1]: 'spatial_dims' 2 differs from the card's 3"),
    (lambda d: d["parts"][0].update(normalization={"kind": "bogus"}), "parts[0]: field 'normalization.kind'"),
])
def test_a_wrong_multi_part_card_is_refused_with_the_reason(change, expected):
    data = two_parts().to_dict()
    change(data)
    assert expected in card_problems(data)


def test_each_parts_weights_are_stored_under_its_index_and_load_back(tmp_path):
    card = two_parts()
    path = save_model(tmp_path / "m.safetensors", card, build_from_card(card))
    loaded = load_model(path)
    assert len(loaded.network.parts) == 2
    state = loaded.network.state_dict()
    assert state and all(name.startswith(("parts.0.", "parts.1.")) for name in state)


def test_later_parts_write_over_earlier_ones_and_each_keeps_the_rest(tmp_path):
    card = two_parts()
    # Part 2's narrow 'organ' band finds the large organ only: part 1's 'small' must survive it.
    second = dataclasses.replace(card.parts[1], network=NetworkInfo(
        "test_intensity_bands", None, {"bands": [[-1.0, 0.8], [0.6, 0.2], [99.0, 0.5]]}))
    card = dataclasses.replace(card, parts=[card.parts[0], second])
    model = load_model(save_model(tmp_path / "m.safetensors", card, build_from_card(card)))
    phantom, _ = make_phantom()
    merged = Segmenter(model, SegmentOptions(device="cpu")).segment(phantom).labels
    alone = [Segmenter(dataclasses.replace(model, card=part, network=network), SegmentOptions(device="cpu"))
             .segment(phantom).labels for part, network in zip(card.parts, model.network.parts)]
    expected = np.array([0, 1, 2], np.uint8)[alone[0]]  # part 1: big 1, small 2
    np.copyto(expected, np.array([0, 3, 0], np.uint8)[alone[1]], where=alone[1] != 0)  # part 2: organ 3
    assert np.array_equal(merged, expected)
    assert {2, 3} <= set(np.unique(merged))  # part 1 kept where part 2 says nothing, written over elsewhere
    assert ((alone[0] != 0) & (alone[1] != 0) & (merged == 3)).any()


def test_class_probabilities_of_several_grids_are_refused(tmp_path):
    card = two_parts()
    model = load_model(save_model(tmp_path / "m.safetensors", card, build_from_card(card)))
    with pytest.raises(MedSegError, match="has 2 parts on grids of their own"):
        Segmenter(model, SegmentOptions(device="cpu")).probabilities(make_phantom()[0])


def test_the_shipped_labels_keep_their_codes_in_a_part():
    part = ModelCard.from_dict(two_parts().to_dict()).parts[0]
    assert part.labels == list(LABELS)


def test_the_memory_check_counts_one_part_at_a_time():
    """Parts run in turn: a model of two parts needs about what its larger part needs, not the input grid's
    full resolution (the card's own spacing and tile are empty)."""
    from MedSegEfficientLib.inference.preflight import estimate

    volume, _ = make_phantom(shape=(120, 256, 256), spacing=(0.8, 0.8, 1.0))
    card = two_parts()
    whole, part = estimate(volume, card, gpu=False), estimate(volume, card.parts[0], gpu=False)
    assert part.ram_bytes < whole.ram_bytes < 1.2 * part.ram_bytes


def test_the_panel_imports_and_runs_a_multi_part_model(slicer_app, slicer_logics, application, user_models, tmp_path):
    """A TotalSegmentator-style model of several parts in the panel: imported through the worker's full check,
    listed, run, and its merged labels named as segments."""
    import time

    slicer = pytest.importorskip("slicer")
    pytest.importorskip("PySide6")
    card = dataclasses.replace(two_parts(), name="two parts")
    source = save_model(tmp_path / "two_parts.safetensors", card, build_from_card(card))
    panel = slicer_app.open_module()
    panel.chooseModelFile = lambda: str(source)
    panel.ui.importModelButton.click()
    assert (user_models / "two_parts.safetensors").is_file()
    phantom, _ = make_phantom(seed=2)
    node = slicer_logics.scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "phantom")
    node.SetSpacing(*phantom.spacing)
    slicer.util.updateVolumeFromArray(node, phantom.array)
    panel._parameterNode.inputVolume = node
    panel._parameterNode.modelPath = str(user_models / "two_parts.safetensors")
    assert panel.ui.modelSelector.qobject.currentText() == "two parts"
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    panel.ui.segmentButton.click()
    deadline = time.time() + 120
    while panel._run is not None and time.time() < deadline:
        application.processEvents()
        time.sleep(0.02)
    assert panel.ui.statusLabel.text == "Done.", (panel.ui.statusLabel.text, slicer_app.module.displayed_errors)
    segmentation = panel._lastResult.segmentation_node.GetSegmentation()
    names = {segmentation.GetSegment(i).GetName() for i in segmentation.GetSegmentIDs()}
    assert names == {"small", "organ"}  # part 2's 'organ' wrote over part 1's 'big' everywhere it found it
