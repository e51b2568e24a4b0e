"""Reading real CT files and DICOM series; writing label maps and Slicer .seg.nrrd files."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegEfficientLib.errors import InputImageError
from MedSegEfficientLib.io.images import read_image, write_label_image
from MedSegEfficientLib.io.seg_nrrd import segment_metadata
from MedSegEfficientLib.volume import Volume, to_sitk
from models_for_tests import LABELS
from phantoms import make_phantom, oblique_direction


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_formats_keep_voxels_and_geometry(tmp_path, suffix):
    image, _ = make_phantom(direction=oblique_direction())
    path = write_label_image(image.array, image, tmp_path / f"ct{suffix}")
    back = read_image(path)
    assert np.array_equal(back.array, image.array)
    assert np.allclose(back.ijk_to_lps(), image.ijk_to_lps(), atol=1e-4)


def test_dicom_series_folder_matches_its_mask_geometry(samples):
    volume = read_image(samples["example_ct_dicom"])
    mask = read_image(samples["example_seg_dicom"])
    assert volume.grid_shape == (20, 512, 512)
    assert volume.spacing == pytest.approx((0.9765625, 0.9765625, 2.0))
    # same physical grid, stored with another y direction: the corners coincide
    corners = [np.array([i, j, k, 1.0]) for i in (0, 511) for j in (0, 511) for k in (0, 19)]
    ours = sorted(tuple(np.round(volume.ijk_to_lps() @ c, 3)) for c in corners)
    theirs = sorted(tuple(np.round(mask.ijk_to_lps() @ c, 3)) for c in corners)
    assert ours == theirs


def test_real_ct_geometry(samples):
    volume = read_image(samples["example_ct"])
    assert volume.grid_shape == (112, 101, 122)
    assert volume.array.dtype == np.int32
    assert np.allclose(volume.direction, np.diag([-1, -1, 1]))


def test_unreadable_and_missing_files(tmp_path):
    with pytest.raises(InputImageError, match="no such file"):
        read_image(tmp_path / "missing.nii.gz")
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"this is not an image")
    with pytest.raises(InputImageError, match="cannot read broken.nii.gz"):
        read_image(broken)
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(InputImageError, match="no DICOM series"):
        read_image(empty)


def test_four_dimensional_image_is_refused(tmp_path):
    series = sitk.JoinSeries([to_sitk(make_phantom(shape=(6, 8, 8))[0])] * 3)
    path = tmp_path / "fmri.nii.gz"
    sitk.WriteImage(series, str(path))
    with pytest.raises(InputImageError, match="is 4D"):
        read_image(path)


def test_segment_extents_and_terminology():
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1:3, 2, 3:5] = 1
    metadata = segment_metadata(labels, Volume(labels), LABELS)
    assert metadata["Segment0_Extent"] == "3 4 2 2 1 2"
    assert metadata["Segment1_Extent"] == "0 -1 0 -1 0 -1"
    assert "SCT^10200004^Liver" in metadata["Segment0_Tags"]


def test_the_picture_has_a_legend_and_tells_neighbouring_labels_apart(tmp_path):
    from PIL import Image

    from MedSegEfficientLib.io.overlay import MIN_COLOUR_DISTANCE, display_colours, write_overlay_png
    from MedSegEfficientLib.model.card import LabelInfo

    # The shipped cards' terminology colours: liver and stomach differ by 7, the kidneys by 16.
    labels = [LabelInfo(1, "liver", (221, 130, 101)), LabelInfo(2, "stomach", (216, 132, 105)),
              LabelInfo(3, "right kidney", (185, 102, 83)), LabelInfo(4, "left kidney", (185, 102, 99)),
              LabelInfo(5, "inferior vena cava", (0, 151, 206))]
    colours = display_colours(labels)
    assert colours[1] == (221, 130, 101) and colours[5] == (0, 151, 206)  # kept where distinct enough
    values = list(colours.values())
    assert min(np.linalg.norm(np.subtract(a, b)) for i, a in enumerate(values) for b in values[i + 1:]) \
        >= MIN_COLOUR_DISTANCE
    image = Volume(np.full((4, 40, 50), 40, np.int16), (1.0, 1.0, 2.0))
    mask = np.zeros((4, 40, 50), np.uint8)
    mask[:, 5:15, 5:20], mask[:, 20:30, 5:20] = 1, 2
    picture = tmp_path / "p.png"
    write_overlay_png(image, mask, labels, picture)
    with Image.open(picture) as written:
        assert written.format == "PNG" and written.width > 10 * 50 and written.height >= 10 * 40  # enlarged, + legend
        pixels = np.asarray(written.convert("RGB"))
    legend = pixels[:, 10 * 50:]
    for value in (1, 2):  # a swatch of each label shown, in its display colour
        assert np.all(legend == colours[value], axis=-1).any()
    assert not np.all(legend == colours[3], axis=-1).any()  # the kidneys are not on the slice: not listed


def test_an_mr_picture_shows_a_light_label_and_its_border(tmp_path):
    from PIL import Image

    from MedSegEfficientLib.io.overlay import write_overlay_png
    from MedSegEfficientLib.model.card import LabelInfo

    head = np.full((3, 40, 40), 600, np.int16)  # in a CT window both 600 and 900 would be pure white
    head[:, 8:32, 8:32] = 900  # a bright MR brain: white in a CT window
    mask = np.zeros(head.shape, np.uint8)
    mask[:, 8:32, 8:32] = 1
    picture = tmp_path / "brain.png"
    write_overlay_png(Volume(head), mask, [LabelInfo(1, "brain", (250, 250, 225))], picture, modality="MR")
    with Image.open(picture) as written:
        pixels = np.asarray(written.convert("RGB")).astype(int)[:, : 10 * 40]
    inside, outside = pixels[200, 200], pixels[30, 30]
    assert inside.max() - inside.min() > 40  # tinted with a hue, not grey on grey
    assert outside.max() < 250  # the head is in an MR window, not saturated white
