"""The engine: a volume and a model in, an integer label array on the input grid out.

3D models: reorient and resample to the model's spacing, normalise, sliding window with Gaussian
blending (MONAI's scheme, our code: see sliding_window.py), argmax, nearest-neighbour labels back to the input grid. 2D models: the same grid handling, then
slices in batches. A progress callback and a cancel check run between tiles or slice batches; on GPU
out-of-memory the batch is halved, then the run moves to the CPU, and the report says so.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from MedSegEfficientLib.model.weights import LoadedModel, load_model
from MedSegEfficientLib.inference.gpu.cuda_graphs import GraphedForward
from MedSegEfficientLib.inference.gpu.devices import describe_device, empty_cache, is_out_of_memory, select_device
from MedSegEfficientLib.errors import Cancelled, MedSegError
from MedSegEfficientLib.inference.gpu.label_download import HostLabels
from MedSegEfficientLib.inference.preflight import free_memory, require_ram
from MedSegEfficientLib.inference.cleanup import clean_labels
from MedSegEfficientLib.inference.mirroring import tensor_dims, with_mirroring
from MedSegEfficientLib.inference.multi_part import segment_parts
from MedSegEfficientLib.inference.nnunet import tiling as nnunet_tiling
from MedSegEfficientLib.inference.nnunet.orientation import oriented
from MedSegEfficientLib.inference.nnunet.pipeline import NnUNetScores, nnunet_model_grid
from MedSegEfficientLib.inference.preprocessing import (ModelGrid, check_input, labels_on_input_grid, segmentable,
                                                        to_model_grid)
from MedSegEfficientLib.inference.score_resampling import ScoresToResample, SliceLabelsOnInputGrid
from MedSegEfficientLib.networks.triton_switch import disable_triton, is_triton_failure, triton_usable
from MedSegEfficientLib.inference.peak_ram import peak_ram_bytes
from MedSegEfficientLib.inference.run_report import RunReport, SegmentationResult
from MedSegEfficientLib.model.weak_labels import weak_labels_notice
from MedSegEfficientLib.inference.gpu.slice_staging import slice_batches
from MedSegEfficientLib.inference.sliding_window import count_batches, sliding_window
from MedSegEfficientLib.inference.sliding_window import tile_starts as sliding_tile_starts
from MedSegEfficientLib.volume import Volume

ProgressCallback = Callable[[float, str], None]
CancelCheck = Callable[[], bool]

# Share of the progress bar given to each stage; the network gets the most, reported per tile or slice.
_STAGE_SPAN = {"preprocessing": (0.0, 0.1), "network": (0.1, 0.9), "postprocessing": (0.9, 1.0)}
_GPU_OUTPUT_SHARE = 0.5  # blended outputs larger than this share of free GPU memory accumulate on the host
_ARGMAX_SLAB = 16  # label slices per argmax pass
_GRAPH_MIN_BATCHES = 4  # fewer 2D batches do not repay the two eager passes and the capture


@dataclass
class SegmentOptions:
    device: str = "auto"
    fast: bool = False  # fewer overlapping tiles: about half the network time, slightly rougher borders
    batch_size: int | None = None  # tiles (3D) or slices (2D) per forward pass
    overlap: float | None = None
    mixed_precision: bool = True  # float16 autocast on CUDA
    # Replay the forward pass as a CUDA graph on CUDA where it can be captured. None (default): for 2D slice
    # batches of volumes with at least _GRAPH_MIN_BATCHES batches (token networks are launch-bound: MLLA-UNet-T and
    # HRMedSeg ran 1.5x and 1.8x faster), not for 3D tiles (TokenSeg: 7 % faster for 0.4 GiB more). experiments/benchmarks-log.md.
    cuda_graphs: bool | None = None
    # Refuse a run whose host memory would exceed what is available, before anything big is allocated
    # (preflight.require_ram); False runs it anyway.
    check_memory: bool = True
    # Make the model grid with torch on the run's device (torch_preprocessing.py): None (default) on CUDA, where
    # the host stages were most of a run's time (the GPU-run issue); True also elsewhere; False never.
    device_preprocessing: bool | None = None
    # 3D models: class probabilities resampled to the input grid and the argmax taken there (score_resampling.py),
    # smooth borders; False: the argmax on the model grid, labels brought back by nearest neighbour (model voxels
    # as steps; experiments/benchmarks-log.md says what each costs).
    smooth_labels: bool = True

    def tile_overlap(self) -> float:
        if self.overlap is not None:
            return self.overlap
        return 0.25 if self.fast else 0.5


class Segmenter:
    """Holds a loaded model on its device so that repeated runs pay the start-up once."""

    def __init__(self, model: LoadedModel, options: SegmentOptions | None = None) -> None:
        self.model = model
        self.options = options or SegmentOptions()
        self.device = select_device(self.options.device)
        self._home_device = self.device
        self._parameters = sum(parameter.numel() for parameter in model.network.parameters())
        self.model.network.to(self.device).eval()
        self._graph_notice = ""
        # One captured graph, kept between runs: capturing costs two eager passes, which a single volume of a few
        # batches would otherwise pay every time. Its memory stays with the Segmenter.
        self._graphed: dict[tuple, GraphedForward] = {}
        self._weak_labels = weak_labels_notice(model.card)
        # A multi-part model: one engine per part, sharing this one's options (inference/multi_part.py).
        self._parts = [Segmenter(LoadedModel(part, network, model.path), self.options)
                       for part, network in zip(model.card.parts, getattr(model.network, "parts", []))]

    @classmethod
    def from_file(cls, path, options: SegmentOptions | None = None) -> "Segmenter":
        return cls(load_model(path), options)

    @property
    def card(self):
        return self.model.card

    def segment(self, volume: Volume, progress: ProgressCallback | None = None,
                cancel: CancelCheck | None = None) -> SegmentationResult:
        if self._parts:
            return segment_parts(self._parts, self.card, volume, progress, cancel)
        volume = segmentable(volume)
        report = RunReport(device=describe_device(self.device))
        if self._weak_labels:
            report.notices.append(self._weak_labels)
        tracker = _Tracker(progress, cancel)
        check_input(volume, self.card)
        if self.options.check_memory:
            require_ram(volume, self.card, self.device.type == "cuda", self._parameters)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            with _timed(report, "preprocessing"):
                tracker.stage("preprocessing", 0.0)
                on_device = self.options.device_preprocessing
                if on_device is None:
                    on_device = self.device.type == "cuda"
                labels_back = None
                if self.card.nnunet is not None:  # nnU-Net's own pipeline, with torch wherever the run is
                    turned, labels_back = oriented(volume, self.card.orientation)
                    grid = nnunet_model_grid(turned, self.card, self.device if on_device else torch.device("cpu"))
                    del turned
                else:
                    grid = to_model_grid(volume, self.card, self.device if on_device else None)
                tracker.stage("preprocessing", 1.0)
            with _timed(report, "network"):
                labels = self._infer_with_fallback(grid, tracker, report, cancel is not None)
            with _timed(report, "postprocessing"):
                tracker.stage("postprocessing", 0.0)
                if isinstance(labels, (ScoresToResample, NnUNetScores)):
                    labels = labels.labels()
                elif labels_back is None and not self._scores_resampled(grid):  # else on the input grid already
                    labels = labels_on_input_grid(labels, grid, volume)
                if labels_back is not None:  # nnU-Net's mode: from the card's orientation to the input's array
                    labels = labels_back(labels)
            if self.card.postprocessing:  # its own figure: what the card's clean-up costs
                with _timed(report, "cleanup"):
                    labels = clean_labels(labels, volume.spacing, self.card)
            tracker.stage("postprocessing", 1.0)
            if self.device.type == "cuda":
                report.peak_gpu_bytes = int(torch.cuda.max_memory_allocated(self.device))
        finally:
            self._return_home(report)
        report.peak_ram_bytes = peak_ram_bytes()
        return SegmentationResult(labels, report)

    def nnunet_scores(self, volume: Volume) -> NnUNetScores:
        """An nnU-Net-mode model's blended logits on its model grid, on their way to labels (``.labels()``, on the
        input array turned to the card's orientation): what ``segment`` computes before its argmax, for comparing
        class scores with nnU-Net's own (the parity harness)."""
        if self.card.nnunet is None:
            raise MedSegError(f"model '{self.card.name}' does not run in nnU-Net's mode")
        volume = segmentable(volume)
        check_input(volume, self.card)
        grid = nnunet_model_grid(oriented(volume, self.card.orientation)[0], self.card, self.device)
        return self._infer_with_fallback(grid, _Tracker(None, None), RunReport(device=describe_device(self.device)))

    def _return_home(self, report: RunReport) -> None:
        """A fallback to the CPU holds for one run: the next run tries the chosen device again."""
        if self.device != self._home_device:
            self.device = self._home_device
            self.model.network.to(self.device)
            report.notices.append(f"the next run tries {self.device.type} again")

    def _infer_with_fallback(self, grid: ModelGrid, tracker: "_Tracker", report: RunReport,
                             cancellable: bool = False) -> np.ndarray | ScoresToResample:
        batch = self.options.batch_size or _default_batch(self.card.spatial_dims, self.device, cancellable)
        self._graph_notice = ""  # this run's, not an earlier one's
        while True:
            try:
                labels = self._infer(grid, batch, tracker)
                if self._graph_notice:
                    report.notices.append(self._graph_notice)
                return labels
            except Cancelled:
                raise
            except Exception as error:  # noqa: BLE001 - sorted below: Triton, out of memory, or the input
                if is_triton_failure(error) and triton_usable():
                    disable_triton(_first_line(error))
                    report.notices.append(f"the Triton kernels failed ({_first_line(error)}); running the torch "
                                          "modules instead for the rest of this session")
                    self._graphed.clear()
                    continue
                if not is_out_of_memory(error):
                    if not isinstance(error, (RuntimeError, ValueError)):
                        raise
                    if "more than 1 spatial element" in str(error) or "more than 1 value per channel" in str(error):
                        raise MedSegError(f"model '{self.card.name}': its tile {self.card.patch_size} (model grid "
                                          f"{tuple(grid.array.shape[1:])}) is too small for its network, whose deepest "
                                          "level is down to one voxel: the card needs a larger patch_size") from error
                    raise MedSegError(f"model '{self.card.name}' cannot take this input (model grid "
                                      f"{tuple(grid.array.shape[1:])}): {_first_line(error)}") from error
                self._graphed.clear()  # a kept graph's memory is the first to go
                empty_cache(self.device)
                if batch > 1:
                    batch = max(1, batch // 2)
                    report.notices.append(f"out of memory on {self.device.type}: retrying with batch {batch}")
                elif self.device.type != "cpu":
                    report.notices.append(f"out of memory on {self.device.type} at batch 1: continuing on the CPU "
                                          "for this run")
                    self.device = torch.device("cpu")
                    self.model.network.to(self.device)
                    report.device = describe_device(self.device) + " (after GPU out of memory)"
                else:
                    raise MedSegError("out of memory on the CPU: use fast mode, a region of interest, "
                                      "or a machine with more memory") from None

    def _infer(self, grid: ModelGrid, batch: int, tracker: "_Tracker") -> np.ndarray | ScoresToResample:
        # The autocast weight cache cannot live across a CUDA graph capture (PyTorch's CUDA graphs notes).
        autocast = torch.autocast("cuda", dtype=torch.float16, cache_enabled=not self._graphs_wanted(grid, batch),
                                  enabled=self.device.type == "cuda" and self.options.mixed_precision)
        with torch.inference_mode(), autocast:
            if self.card.spatial_dims == 3:
                return self._infer_volume(grid, batch, tracker)
            return self._infer_slices(grid, batch, tracker)

    def _label_dtype(self) -> type:
        return np.uint8 if self.card.out_channels <= 256 else np.uint16

    def probabilities(self, volume: Volume) -> tuple[torch.Tensor, Volume]:
        """Softmax class probabilities (K, k, j, i), float32 on the CPU, on the model grid, and that grid's
        geometry: a teacher's soft targets for distillation (training/soft_targets.py). No clean-up is applied."""
        if self._parts:
            raise MedSegError(f"model '{self.card.name}' has {len(self._parts)} parts on grids of their own: its "
                              "class probabilities are not one volume")
        volume = segmentable(volume)
        check_input(volume, self.card)
        grid = nnunet_model_grid(oriented(volume, self.card.orientation)[0], self.card, torch.device("cpu")) \
            if self.card.nnunet is not None \
            else to_model_grid(volume, self.card)
        needed = 2 * self.card.out_channels * math.prod(grid.array.shape[1:]) * 4  # scores and their softmax
        available = free_memory("cpu")[1]
        if self.options.check_memory and available is not None and needed > available:
            raise MedSegError(f"the class probabilities of this image need {needed / 2**30:.1f} GiB and "
                              f"{available / 2**30:.1f} GiB are available: use a coarser model grid or a crop")
        batch = self.options.batch_size or _default_batch(self.card.spatial_dims, self.device, False)
        tracker = _Tracker(None, None)
        autocast = torch.autocast("cuda", dtype=torch.float16,
                                  enabled=self.device.type == "cuda" and self.options.mixed_precision)
        with torch.inference_mode(), autocast:
            if self.card.spatial_dims == 3:
                scores = self._volume_scores(grid, batch, tracker, self.model.network)[0]
                return torch.softmax(scores.float(), 0).cpu(), grid.geometry
            axis = 3 - self.card.slice_axis
            mirrored = self._mirrored(self.model.network)
            parts = [torch.softmax(self._forward_2d(slices, mirrored).float(), 1).cpu()
                     for _, slices in slice_batches(grid.array, axis, batch, self.device)]
        return torch.cat(parts).movedim(1, 0).movedim(1, axis), grid.geometry  # (n, K, H, W) to (K, k, j, i)

    def _infer_volume(self, grid: ModelGrid, batch: int, tracker: "_Tracker") -> np.ndarray | ScoresToResample:
        """The scores, to go to the input grid (``_scores_resampled``), or the model grid's labels."""
        graphed = self._graphs_wanted(grid, batch) and self.card.patch_size is not None
        forward = self._graphed_forward(("3d", batch, tuple(self.card.patch_size))) if graphed else self.model.network
        logits = self._volume_scores(grid, batch, tracker, forward)
        self._note_graph(forward)
        if grid.nnunet is not None:
            return NnUNetScores(logits[0], grid.nnunet, self.card.nnunet.scores, self._label_dtype())
        if self._scores_resampled(grid):
            return ScoresToResample(logits[0], grid.mapping, self._label_dtype())
        return self._argmax_labels(logits[0])

    def _scores_resampled(self, grid: ModelGrid) -> bool:
        """Class scores go to the input grid and the argmax is taken there (score_resampling.py): a 3D model's
        once the volume is done, a 2D model's batch of slices by batch."""
        return self.options.smooth_labels and grid.mapping is not None

    def _volume_scores(self, grid: ModelGrid, batch: int, tracker: "_Tracker",
                       forward: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Blended class scores (1, K, k, j, i) of the whole model grid."""
        image = torch.as_tensor(grid.array)[None].to(self.device)
        spatial = tuple(image.shape[2:])
        if self.card.patch_size is None:  # whole volume at once, padded to the network's divisor
            tracker.expect(1)
            logits = _forward_padded(self._mirrored(forward), image, self._size_divisor())
            tracker.advance()
        else:
            roi = tuple(self.card.patch_size)
            overlap, placement, weights, pad_value = self._tiling(roi, float(grid.array.min()))
            tracker.expect(count_batches(spatial, roi, overlap, batch, placement))
            mirrored = self._mirrored(forward)

            def predictor(tiles: torch.Tensor) -> torch.Tensor:
                tracker.check_cancel()
                return mirrored(tiles)

            # Class scores blend in float16 on a GPU run in mixed precision (its logits are float16 already).
            half = self.device.type == "cuda" and self.options.mixed_precision
            output_device = _blending_device(self.device, self.card.out_channels * math.prod(spatial) * (2 if half else 4))
            blend_dtype = torch.float16 if half and output_device.type == "cuda" else torch.float32
            logits = sliding_window(image, roi, batch, predictor, overlap=overlap, pad_value=pad_value,
                                    output_device=output_device, on_batch=tracker.advance, dtype=blend_dtype,
                                    placement=placement, weights=weights)
            del mirrored, predictor
        del image
        return logits

    def _tiling(self, roi: tuple[int, ...], lowest: float) -> tuple:
        """Overlap, tile placement, importance map and padding value: MONAI's, with tiles beyond a small volume's
        edge filled with its lowest value (air), as in training; or nnU-Net's (its tile step, even spread,
        Gaussian, zero padding) in its mode, unless the user set an overlap or fast mode."""
        mode = self.card.nnunet
        if mode is None:
            return self.options.tile_overlap(), sliding_tile_starts, None, lowest
        user_set = self.options.overlap is not None or self.options.fast
        overlap = self.options.tile_overlap() if user_set else 1.0 - mode.tile_step
        return overlap, nnunet_tiling.tile_starts, nnunet_tiling.importance_map(roi, self.device), 0.0

    def _argmax_labels(self, scores: torch.Tensor) -> np.ndarray:
        """Labels from (K, k, j, i) class scores, slab by slab: argmax's int64 result never covers the volume."""
        dtype = torch.uint8 if self._label_dtype() == np.uint8 else torch.int32
        with HostLabels(tuple(scores.shape[1:]), dtype, scores.device, _ARGMAX_SLAB) as labels:
            for start in range(0, scores.shape[1], _ARGMAX_SLAB):
                labels.put(start, scores[:, start:start + _ARGMAX_SLAB].argmax(0).to(dtype))
            result = labels.finish()
        return result.astype(self._label_dtype(), copy=False)

    def _infer_slices(self, grid: ModelGrid, batch: int, tracker: "_Tracker") -> np.ndarray:
        # Array axes are (C, k, j, i); image axis a (x=0, y=1, z=2) is array axis 3 - a. Each batch's labels go
        # to the host on a side stream while the network runs the next batch (label_download.py).
        axis = 3 - self.card.slice_axis
        count = grid.array.shape[axis]
        slice_shape = tuple(n for a, n in enumerate(grid.array.shape) if a != axis)  # (C, H, W)
        small_labels = self._label_dtype() == np.uint8
        label_dtype = torch.uint8 if small_labels else torch.int32
        tracker.expect(math.ceil(count / batch))
        half = self.device.type == "cuda" and self.options.mixed_precision
        key = ("2d", batch, axis, slice_shape, half)  # volumes of any slice count share their full batches' graph
        forward = self._graphed_forward(key) if self._graphs_wanted(grid, batch) else self.model.network
        mirrored = self._mirrored(forward)
        if grid.nnunet is not None:  # nnU-Net's 2d: the slices' scores kept, then resampled as its export does
            scores = None
            for start, slices in slice_batches(grid.array, axis, batch, self.device, torch.float16 if half else None):
                tracker.check_cancel()
                logits = self._forward_2d(slices, mirrored).float()
                if scores is None:
                    scores = torch.empty((logits.shape[1], count, *logits.shape[2:]), device=logits.device)
                scores[:, start:start + logits.shape[0]] = logits.movedim(1, 0)
                tracker.advance()
            return NnUNetScores(scores, grid.nnunet, self.card.nnunet.scores, self._label_dtype())
        if self._scores_resampled(grid):  # each batch's scores straight to the input grid's slices
            on_input = SliceLabelsOnInputGrid(grid.mapping, self.card.slice_axis, self._label_dtype())
            for start, slices in slice_batches(grid.array, axis, batch, self.device, torch.float16 if half else None):
                tracker.check_cancel()
                on_input.put(start, self._forward_2d(slices, mirrored))  # read before the next replay
                tracker.advance()
            self._note_graph(forward)
            return on_input.labels
        with HostLabels((count, *slice_shape[1:]), label_dtype, self.device, batch) as labels:
            for start, slices in slice_batches(grid.array, axis, batch, self.device, torch.float16 if half else None):
                tracker.check_cancel()
                logits = self._forward_2d(slices, mirrored)
                labels.put(start, logits.argmax(1).to(label_dtype))  # read before the next replay
                tracker.advance()
            result = labels.finish()
        self._note_graph(forward)
        return np.moveaxis(result.astype(self._label_dtype(), copy=False), 0, 2 - self.card.slice_axis)

    def _mirrored(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        return with_mirroring(forward, tensor_dims(self.card.mirroring, self.card.spatial_dims, self.card.slice_axis),
                              combinations=self.card.nnunet is not None)

    def _graphs_wanted(self, grid: ModelGrid, batch: int) -> bool:
        if self.device.type != "cuda" or self.options.cuda_graphs is False:
            return False
        if self.card.spatial_dims == 3:
            return bool(self.options.cuda_graphs) and self.card.patch_size is not None
        slices = grid.array.shape[3 - self.card.slice_axis]
        return bool(self.options.cuda_graphs) or slices >= _GRAPH_MIN_BATCHES * batch

    def _graphed_forward(self, key: tuple) -> GraphedForward:
        if key not in self._graphed:
            self._graphed.clear()  # a graph for another shape: its memory goes back first
            self._graphed[key] = GraphedForward(self.model.network)
        return self._graphed[key]

    def _note_graph(self, forward) -> None:
        if isinstance(forward, GraphedForward) and forward.disabled_because:
            self._graph_notice = f"CUDA graph not used: {forward.disabled_because}"

    def _size_divisor(self) -> int:
        """The card's divisor, or the network's own if it needs a coarser one (e.g. five halvings: 32)."""
        return max(self.card.size_divisor, int(getattr(self.model.network, "size_divisor", 1)))

    def _forward_2d(self, images: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.card.patch_size is None:
            return _forward_padded(network, images, self._size_divisor())
        if self.card.slice_fit == "tile":  # tiles of the trained size at the native grid, as nnU-Net 2d runs
            roi = tuple(self.card.patch_size)
            tiled = []
            for image in images:
                overlap, placement, weights, pad_value = self._tiling(roi, float(image.min()))
                tiled.append(sliding_window(image[None], roi, images.shape[0], network, overlap=overlap,
                                            pad_value=pad_value, placement=placement, weights=weights))
            return torch.cat(tiled)
        size = tuple(images.shape[2:])
        resized = F.interpolate(images, size=tuple(self.card.patch_size), mode="bilinear", align_corners=False)
        logits = network(resized)
        return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def _default_batch(spatial_dims: int, device: torch.device, cancellable: bool) -> int:
    """Tiles (3D) or slices (2D) per pass. On the CPU a run that can be cancelled takes one tile at a time: as fast
    there, and Cancel then answers within a single tile."""
    if device.type == "cpu" and cancellable:
        return 1
    return 4 if spatial_dims == 3 else 16


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _forward_padded(network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, divisor: int) -> torch.Tensor:
    spatial = images.shape[2:]
    pads: list[int] = []
    for size in reversed(spatial):  # F.pad wants the last axis first
        pads += [0, (-size) % divisor]
    padded = F.pad(images, pads, mode="replicate") if any(pads) else images
    logits = network(padded)
    return logits[(Ellipsis, *(slice(0, size) for size in spatial))]


def _blending_device(device: torch.device, output_bytes: int) -> torch.device:
    """Blend tiles on the GPU when the float32 output and its weight map fit comfortably in free memory;
    blending on the host instead is several times slower, but never runs out of GPU memory."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    return device if 2 * output_bytes < _GPU_OUTPUT_SHARE * free else torch.device("cpu")


class _Tracker:
    """Maps per-tile steps onto the overall progress bar and raises Cancelled when asked to stop."""

    def __init__(self, progress: ProgressCallback | None, cancel: CancelCheck | None) -> None:
        self._progress = progress
        self._cancel = cancel
        self._total = 1
        self._done = 0

    def check_cancel(self) -> None:
        if self._cancel is not None and self._cancel():
            raise Cancelled("cancelled by the user; nothing was written")

    def stage(self, name: str, fraction: float) -> None:
        self.check_cancel()
        if self._progress is not None:
            low, high = _STAGE_SPAN[name]
            self._progress(low + (high - low) * fraction, name)

    def expect(self, steps: int) -> None:
        self._total, self._done = max(1, steps), 0
        self.stage("network", 0.0)

    def advance(self) -> None:
        self._done += 1
        self.stage("network", min(1.0, self._done / self._total))


class _timed:
    def __init__(self, report: RunReport, name: str) -> None:
        self.report, self.name = report, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.report.seconds[self.name] = self.report.seconds.get(self.name, 0.0) + time.perf_counter() - self.start
