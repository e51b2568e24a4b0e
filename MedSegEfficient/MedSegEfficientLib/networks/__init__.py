"""Networks: one file per family, composed from shared blocks, built through the registry."""

from .registry import (NetworkSpec, available_networks, build_network, get_network_spec, register_network,
                       resolve_arguments)

__all__ = ["NetworkSpec", "available_networks", "build_network", "get_network_spec", "register_network",
           "resolve_arguments"]
