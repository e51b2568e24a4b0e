"""Networks of a researcher's own in processes this package starts (the Slicer worker, batch workers): the modules
named in ``MEDSEG_WORKER_IMPORTS`` (comma-separated) are imported there first, so that they can register their
networks (``networks.register_network``) before a model file that uses one is loaded."""

from __future__ import annotations

import importlib
import os

PLUGINS_VARIABLE = "MEDSEG_WORKER_IMPORTS"


def import_network_plugins() -> list[str]:
    names = [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]
    for name in names:
        importlib.import_module(name)
    return names


__all__ = ["PLUGINS_VARIABLE", "import_network_plugins"]
