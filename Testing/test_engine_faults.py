"""The engine under faults: Cancel answers within one tile on the CPU, a Triton failure falls back to the torch
modules with a notice, the CPU's out-of-memory is recognised, and a run that cannot fit in RAM is refused first."""

from __future__ import annotations

import pytest
import torch

from MedSegEfficientLib.errors import Cancelled, InputImageError
from MedSegEfficientLib.inference import preflight
from MedSegEfficientLib.inference.engine import SegmentOptions, Segmenter
from MedSegEfficientLib.inference.gpu.devices import is_out_of_memory
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.networks import NetworkSpec, get_network_spec, register_network, triton_switch
from models_for_tests import IntensityBands, threshold_card, write_threshold_model
from phantoms import make_phantom

TritonCompileError = type("CompilationError", (RuntimeError,), {"__module__": "triton.compiler.errors"})


class NeedsACompiler(IntensityBands):
    """Fails as a Triton kernel does on a machine without a C compiler, while Triton is in use."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if triton_switch.triton_usable():
            raise TritonCompileError("Failed to find C compiler. Please specify via CC environment variable.")
        return super().forward(x)


def _register() -> None:
    try:
        get_network_spec("test_needs_a_compiler")
    except Exception:
        register_network(NetworkSpec(name="test_needs_a_compiler", builder=NeedsACompiler, spatial_dims=(2, 3)))


_register()


def test_cancel_answers_within_one_tile_on_the_cpu(tmp_path):
    model = load_model(write_threshold_model(tmp_path / "bands.safetensors"))
    segmenter = Segmenter(model, SegmentOptions(device="cpu"))
    image, _ = make_phantom(shape=(40, 48, 48))
    forwards = {"total": 0, "after_cancel": 0}
    wanted = {"cancel": False}

    def count(module, inputs, output):
        forwards["total"] += 1
        forwards["after_cancel"] += wanted["cancel"]

    model.network.register_forward_hook(count)

    def progress(fraction: float, stage: str) -> None:
        if stage == "network" and forwards["total"] >= 2:
            wanted["cancel"] = True  # as the panel's Cancel button, mid-run

    with pytest.raises(Cancelled):
        segmenter.segment(image, progress=progress, cancel=lambda: wanted["cancel"])
    assert forwards["total"] >= 2 and forwards["after_cancel"] == 0  # no tile started after the cancel


def test_a_triton_failure_falls_back_to_the_torch_modules(tmp_path, monkeypatch):
    monkeypatch.setattr(triton_switch, "_disabled_because", None)
    monkeypatch.setattr(triton_switch, "_installed", lambda: True)
    card = threshold_card(network=threshold_card().network.__class__("test_needs_a_compiler", None,
                                                                      {"bands": threshold_card().network.args["bands"]}))
    from MedSegEfficientLib.model.weights import build_from_card, save_model

    path = save_model(tmp_path / "compiler.safetensors", card, build_from_card(card))
    image, labels = make_phantom(shape=(16, 20, 24))
    result = Segmenter(load_model(path), SegmentOptions(device="cpu")).segment(image)
    assert any("Triton kernels failed" in notice and "C compiler" in notice for notice in result.report.notices)
    assert not triton_switch.triton_usable() and (result.labels == labels.array).mean() > 0.9


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:116] DefaultCPUAllocator: can't allocate memory: you tried to "
                  "allocate 34359738368 bytes"), True),
    (MemoryError(), True),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
])
def test_out_of_memory_is_recognised_on_every_device(error, expected):
    assert is_out_of_memory(error) is expected


def test_a_run_that_cannot_fit_in_ram_is_refused_before_it_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(preflight, "_available_ram", lambda: 1 << 20)  # 1 MiB free
    segmenter = Segmenter(load_model(write_threshold_model(tmp_path / "bands.safetensors")),
                          SegmentOptions(device="cpu"))
    image, _ = make_phantom(shape=(40, 48, 48))
    with pytest.raises(InputImageError, match="GiB of RAM"):
        segmenter.segment(image)
    forced = Segmenter(segmenter.model, SegmentOptions(device="cpu", check_memory=False))
    assert forced.segment(image).labels.shape == (40, 48, 48)



def test_a_tile_too_small_for_its_network_is_named_in_one_line(tmp_path):
    from MedSegEfficientLib.errors import MedSegError
    from MedSegEfficientLib.model.card import NetworkInfo

    path = write_threshold_model(tmp_path / "tiny_tile.safetensors", network=NetworkInfo("monai_unet", "tiny", {}),
                                 patch_size=[2, 2, 2], size_divisor=1)
    image, _ = make_phantom(shape=(8, 8, 8))
    with pytest.raises(MedSegError, match=r"tile \[2, 2, 2\] .* is too small for its network"):
        Segmenter(load_model(path), SegmentOptions(device="cpu")).segment(image)
