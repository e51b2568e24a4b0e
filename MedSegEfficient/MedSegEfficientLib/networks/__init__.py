"""Networks: one subpackage per family, composed from shared blocks, built by name through the registry.

The registry is a leaf; this file is the one place that imports the families, each of which registers itself.
"""

from MedSegEfficientLib.networks.registry import (NetworkSpec, available_networks, build_network, get_network_spec,
                                                  register_network, resolve_arguments)

# The families: importing each registers its networks (order is the listing's, not a dependency).
from MedSegEfficientLib.networks.baselines import monai_networks, nnunet_topologies, nnunet_v2, plain_unet  # noqa: E402,F401
from MedSegEfficientLib.networks.linear_attention import hrmedseg, mlla_unet  # noqa: E402,F401
from MedSegEfficientLib.networks.mlstm import tm_unet, xlstm_unet  # noqa: E402,F401
from MedSegEfficientLib.networks.tokenseg import network as tokenseg  # noqa: E402,F401

__all__ = ["NetworkSpec", "available_networks", "build_network", "get_network_spec", "register_network",
           "resolve_arguments"]
