"""Learning from corrections in the panel (real Qt offscreen, a real slicer-core scene, the real worker process; the
Slicer application is the named stand-in): a segmentation the panel made is corrected as Segment Editor would leave
it (its segments replaced by the right ones), "Add to my training cases" keeps it in the model's numbering, and
"Improve model" fine-tunes in the worker with progress and Cancel, the new model appearing beside the old."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pytest.importorskip("PySide6")

from MedSegEfficientLib.io.images import read_image  # noqa: E402
from MedSegEfficientLib.model.card import LabelInfo, NetworkInfo  # noqa: E402
from MedSegEfficientLib.model.weights import build_from_card, save_model  # noqa: E402
from MedSegEfficientLib.slicer.scene import labels_to_segmentation_node  # noqa: E402
from models_for_tests import threshold_card  # noqa: E402
from phantoms import make_phantom  # noqa: E402
from test_panel import wait_until_done  # noqa: E402

ROUGH_BANDS = [[-1.0, 0.8], [1.3, 0.5], [2.6, 0.5]]  # a rough model: both organs' bands too bright


@pytest.fixture()
def panel(slicer_app, user_models, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSEG_CASES_DIR", str(tmp_path / "cases"))  # the worker inherits it when it starts
    card = threshold_card(name="rough bands", network=NetworkInfo("test_intensity_bands", None, {"bands": ROUGH_BANDS}))
    save_model(user_models / "rough.safetensors", card, build_from_card(card))
    widget = slicer_app.open_module()
    widget.module = slicer_app.module
    widget.improveMinutes = 0.3
    return widget


def phantom_node(scene, seed):
    image, labels = make_phantom(seed=seed)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", f"phantom{seed}")
    node.SetSpacing(*image.spacing)
    node.SetOrigin(-image.origin[0], -image.origin[1], image.origin[2])  # LPS to RAS
    slicer.util.updateVolumeFromArray(node, image.array)
    return node, labels.array


def segment_and_correct(panel, application, scene, seed):
    """Segment with the rough model, then put the right segments in, as the user's edits would."""
    volume, truth = phantom_node(scene, seed)
    panel._parameterNode.inputVolume = volume
    panel.ui.deviceSelector.qobject.setCurrentText("CPU")
    selector = panel.ui.modelSelector.qobject
    selector.setCurrentIndex(next(i for i in range(selector.count()) if selector.itemText(i) == "rough bands"))
    panel.ui.segmentButton.click()
    wait_until_done(panel, application)
    segmentation = panel._lastResult.segmentation_node
    labels_to_segmentation_node(scene, truth, volume, [LabelInfo(1, "big"), LabelInfo(2, "small")],
                                segmentation_node=segmentation)
    return volume, segmentation, truth


def test_corrections_become_cases_and_improve_the_model(panel, application, slicer_logics, tmp_path, user_models):
    scene = slicer_logics.scene
    truths = []
    for seed in range(3):
        _, _, truth = segment_and_correct(panel, application, scene, seed)
        panel.ui.addCaseButton.click()
        assert panel.ui.casesLabel.text.startswith(f"Kept case phantom{seed}_001: {seed + 1} case(s)"), \
            (panel.ui.casesLabel.text, panel.module.displayed_errors)
        truths.append(truth)
    folder = tmp_path / "cases" / "rough"
    meta = json.loads((folder / "dataset.json").read_text())
    assert [case["name"] for case in meta["cases"]] == ["phantom0_001", "phantom1_001", "phantom2_001"]
    for seed, truth in enumerate(truths):  # the MRML round trip: the corrected segments, in the model's numbering
        stored = read_image(folder / "labelsTr" / f"phantom{seed}_001.nii.gz").array
        assert np.array_equal(stored, truth)

    progress = []
    panel._timer.timeout.connect(lambda: progress.append(panel.ui.statusLabel.text))
    panel.ui.improveButton.click()
    assert panel.ui.improveButton.text == "Cancel improving" and not panel.ui.segmentButton.enabled
    wait_until_done(panel, application)
    assert panel.ui.improveButton.text == "Improve model" and panel.ui.segmentButton.enabled
    assert any("left" in text for text in progress)  # the time estimate, while it runs
    assert panel.ui.casesLabel.text.startswith("kept the fine-tuned model"), (panel.ui.casesLabel.text,
                                                                             panel.module.displayed_errors)
    new = user_models / "rough_finetuned.safetensors"
    assert new.is_file() and panel._parameterNode.modelPath == str(new)
    titles = [panel.ui.modelSelector.qobject.itemText(i) for i in range(panel.ui.modelSelector.qobject.count())]
    assert "rough bands" in titles and "rough bands (fine-tuned)" in titles  # the user picks old or new


def test_a_segment_the_model_does_not_know_is_refused_by_name(panel, application, slicer_logics, tmp_path):
    scene = slicer_logics.scene
    volume, segmentation, truth = segment_and_correct(panel, application, scene, 0)
    segmentation.GetSegmentation().AddEmptySegment("tumour", "tumour")
    with pytest.raises(Exception, match="'tumour' are not labels of model 'rough bands'"):
        panel.onAddCase()
    assert any("could not be added" in text for text in panel.module.displayed_errors)
    assert not (tmp_path / "cases").exists()


def test_cancel_while_improving_leaves_the_model_list_as_it_was(panel, application, slicer_logics, user_models):
    scene = slicer_logics.scene
    for seed in range(2):
        segment_and_correct(panel, application, scene, seed)
        panel.ui.addCaseButton.click()
    panel.improveMinutes = 5.0
    panel.ui.improveButton.click()
    deadline = time.time() + 120
    while "fine-tuning: step" not in panel.ui.statusLabel.text and time.time() < deadline:
        application.processEvents()
        time.sleep(0.02)
    assert "fine-tuning: step" in panel.ui.statusLabel.text  # mid-training
    panel.ui.improveButton.click()  # now "Cancel improving"
    wait_until_done(panel, application)
    assert panel.ui.statusLabel.text.startswith("Improving was cancelled"), panel.ui.statusLabel.text
    assert sorted(p.name for p in user_models.glob("*.safetensors")) == ["rough.safetensors"]
