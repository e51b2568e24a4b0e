"""Nothing lost: an output is never the input, a run that cannot write all its outputs replaces none, a picture
format never silently takes a volume, and two writers of one file never leave a broken one."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.files import StagedOutputs, remove_leftover_temporaries, sha256_of, write_atomically
from MedSegEfficientLib.io.images import write_label_image
from models_for_tests import write_threshold_model
from phantoms import make_phantom


@pytest.fixture()
def case(tmp_path):
    image, _ = make_phantom(shape=(16, 20, 24), seed=3)
    source = write_label_image(image.array, image, tmp_path / "ct.nii.gz")
    model = write_threshold_model(tmp_path / "bands.safetensors")
    existing = tmp_path / "labels.nii.gz"
    existing.write_bytes(b"an earlier result the user keeps")
    return tmp_path, source, model, existing


def segment(capsys, source, model, *options):
    code = main(["segment", str(source), "--model", str(model), "--device", "cpu", "--quiet", *options])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*.part*"))


def test_the_input_is_never_an_output(case, capsys):
    folder, source, model, _ = case
    digest = sha256_of(source)
    code, _, err = segment(capsys, source, model, "-o", str(source))
    assert code == 2 and "is the input" in err and err.count("\n") == 1
    code, _, err = segment(capsys, source, model, "-o", str(folder / "x.seg.nrrd"), "--overlay", str(source))
    assert code == 2 and "--overlay" in err  # a .nii.gz is not a picture: refused before it could overwrite
    assert sha256_of(source) == digest and not leftovers(folder)


@pytest.mark.parametrize("options, expected", [
    (["--overlay", "picture.jpeg"], "--overlay picture.jpeg"),
    (["--json", "report.txt"], "--json report.txt"),
    (["--overlay", "labels.nii.gz"], "--overlay labels.nii.gz"),
])
def test_a_bad_second_output_replaces_nothing(case, capsys, options, expected):
    folder, source, model, existing = case
    options = [str(folder / value) if not value.startswith("--") else value for value in options]
    code, _, err = segment(capsys, source, model, "-o", str(existing), *options)
    assert code == 2 and expected in err and err.count("\n") == 1
    assert existing.read_bytes() == b"an earlier result the user keeps" and not leftovers(folder)


@pytest.mark.parametrize("name, expected", [("out.xyz", ".xyz is not a format"), ("out", "no extension"),
                                            ("out.png", "a picture holds one slice")])
def test_a_format_that_cannot_hold_the_result_is_refused_before_the_run(case, capsys, name, expected):
    folder, source, model, _ = case
    code, out, err = segment(capsys, source, model, "-o", str(folder / name))
    assert code == 2 and expected in err and out == ""
    assert not (folder / name).exists() and not leftovers(folder)


def test_an_unwritable_folder_is_said_before_the_run(case, capsys):
    folder, source, model, _ = case
    blocker = folder / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    code, out, err = segment(capsys, source, model, "-o", str(blocker / "labels.nii.gz"))
    assert code == 2 and "is not a folder" in err and out == ""


def test_all_outputs_appear_together_and_missing_folders_are_made(case, capsys):
    folder, source, model, existing = case
    report = folder / "new" / "deeper" / "report.json"
    code, _, err = segment(capsys, source, model, "-o", str(existing), "--overlay", str(folder / "p.png"),
                           "--json", str(report))
    assert code == 0, err
    assert sitk.ReadImage(str(existing)).GetSize() == (24, 20, 16)
    assert (folder / "p.png").stat().st_size > 0 and '"segments"' in report.read_text()
    assert not leftovers(folder)


def test_a_picture_takes_a_single_slice_result(tmp_path, capsys):
    image, _ = make_phantom(shape=(1, 20, 24), seed=4)
    source = write_label_image(image.array, image, tmp_path / "slice.nrrd")
    model = write_threshold_model(tmp_path / "bands2d.safetensors", spatial_dims=2)
    code, _, err = segment(capsys, source, model, "-o", str(tmp_path / "labels.png"))
    assert code == 0, err
    assert sitk.ReadImage(str(tmp_path / "labels.png")).GetSize()[:2] == (24, 20)


def test_staged_outputs_rename_all_or_none(tmp_path):
    first, second = tmp_path / "a.txt", tmp_path / "b.txt"
    first.write_text("old a")
    with pytest.raises(RuntimeError):
        with StagedOutputs() as outputs:
            outputs.stage(first, lambda temporary: temporary.write_text("new a"))
            outputs.stage(second, lambda temporary: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert first.read_text() == "old a" and not second.exists() and not leftovers(tmp_path)
    with StagedOutputs() as outputs:
        outputs.stage(first, lambda temporary: temporary.write_text("new a"))
        outputs.stage(second, lambda temporary: temporary.write_text("new b"))
    assert (first.read_text(), second.read_text()) == ("new a", "new b") and not leftovers(tmp_path)


def _write_many(path: str, marker: int, count: int) -> None:
    payload = bytes([marker]) * (1 << 20)
    for _ in range(count):
        write_atomically(Path(path), lambda temporary: temporary.write_bytes(payload))


def test_two_processes_writing_one_file_leave_one_complete_result(tmp_path):
    target = tmp_path / "shared.nii.gz"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_many, args=(str(target), marker, 15)) for marker in (1, 2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert [writer.exitcode for writer in writers] == [0, 0]
    content = target.read_bytes()
    assert len(content) == 1 << 20 and len(set(content)) == 1  # one writer's whole payload, never a mix
    assert not leftovers(tmp_path)


def test_the_label_map_written_is_the_result(case, capsys):
    folder, source, model, _ = case
    output = folder / "result.nrrd"
    code, _, err = segment(capsys, source, model, "-o", str(output))
    assert code == 0, err
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(output)))
    assert labels.shape == (16, 20, 24) and set(np.unique(labels)) <= {0, 1, 2} and labels.any()


def test_the_leftovers_of_a_killed_writer_are_found_by_the_temporary_names_it_uses(tmp_path):
    target = tmp_path / "case [1].seg.nrrd"  # glob characters in the name are taken literally
    seen = []

    def killed_mid_write(temporary: Path) -> None:
        seen.append(temporary)
        temporary.write_bytes(b"x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        with StagedOutputs() as outputs:
            outputs.stage(target, killed_mid_write)
    seen[0].write_bytes(b"x")  # as a killed process leaves it: the discard never ran
    other = tmp_path / ".case [10].abc.part.seg.nrrd"
    other.write_bytes(b"x")
    assert remove_leftover_temporaries(target) == 1
    assert not seen[0].exists() and other.exists()
    assert remove_leftover_temporaries(tmp_path / "missing" / "x.nii.gz") == 0
