"""Network registry: a network is built from its name, an optional preset and constructor arguments.

Each network family registers a builder taking ``spatial_dims``, ``in_channels``, ``out_channels`` and its
own keyword arguments; a preset is a named set of those arguments. No global state beyond this table.

A leaf, as timm's ``_registry``: it imports no family. ``networks/__init__.py`` imports the families, which
register themselves, so importing anything under ``networks`` fills the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from MedSegEfficientLib.errors import NetworkConfigError

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    builder: Builder
    spatial_dims: tuple[int, ...]
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    description: str = ""
    default_preset: str | None = None
    preset_dims: dict[str, int] = field(default_factory=dict)  # presets made for one dimensionality

    def dims_for(self, preset: str | None) -> int:
        """The natural dimensionality for a preset: its own, else 3D where supported."""
        preset = preset or self.default_preset
        return self.preset_dims.get(preset or "", max(self.spatial_dims))


_REGISTRY: dict[str, NetworkSpec] = {}


def register_network(spec: NetworkSpec) -> NetworkSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"network '{spec.name}' is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def available_networks() -> list[NetworkSpec]:
    return sorted(_REGISTRY.values(), key=lambda spec: spec.name)


def get_network_spec(name: str) -> NetworkSpec:
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise NetworkConfigError(f"unknown network '{name}' (registered: {known})")
    return _REGISTRY[name]


def resolve_arguments(name: str, preset: str | None, args: dict[str, Any] | None) -> dict[str, Any]:
    """The preset's arguments overridden by explicit ones."""
    spec = get_network_spec(name)
    preset = preset or spec.default_preset
    merged: dict[str, Any] = {}
    if preset is not None:
        if preset not in spec.presets:
            known = ", ".join(sorted(spec.presets)) or "none"
            raise NetworkConfigError(f"network '{name}' has no preset '{preset}' (presets: {known})")
        merged.update(spec.presets[preset])
    merged.update(args or {})
    return merged


def build_network(name: str, spatial_dims: int, in_channels: int, out_channels: int,
                  preset: str | None = None, args: dict[str, Any] | None = None) -> nn.Module:
    spec = get_network_spec(name)
    if spatial_dims not in spec.spatial_dims:
        raise NetworkConfigError(f"network '{name}' supports {spec.spatial_dims}D, not {spatial_dims}D")
    kwargs = resolve_arguments(name, preset, args)
    try:
        with _AllocationBound(name, kwargs):  # one build, refused before a file's arguments allocate a terabyte
            return spec.builder(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                                **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise NetworkConfigError(f"network '{name}' rejected its arguments {_short(kwargs)}: {error}") from error


MAX_PARAMETERS = 2 * 10**9  # 8 GiB of float32 weights: ten times the largest network this package knows
_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full}


class _AllocationBound(TorchFunctionMode):
    """Counts what a network's construction asks the tensor factories for (its parameters and buffers are made by
    them) and refuses, before the allocation, what would pass ``MAX_PARAMETERS`` float32 values in all: a card's
    ``features`` of 100000 is one line, not a terabyte asked of the system."""

    def __init__(self, name: str, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.name, self.kwargs, self.values = name, kwargs, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES:
            size = kwargs.get("size", args[0] if args else ())
            if isinstance(size, int):  # torch.empty(2, 3) as well as torch.empty((2, 3))
                size = args if func is not torch.full else (size,)
            self.values += math.prod(int(n) for n in size)
            if self.values > MAX_PARAMETERS:
                raise NetworkConfigError(
                    f"network '{self.name}' with {_short(self.kwargs)} would have more than {MAX_PARAMETERS:,} "
                    f"parameters ({self.values * 4 / 2**30:,.0f} GiB asked so far), more than this package builds")
        return func(*args, **kwargs)


def _short(kwargs: dict[str, Any]) -> str:
    text = repr(kwargs)
    return text if len(text) <= 200 else text[:200] + "...}"

