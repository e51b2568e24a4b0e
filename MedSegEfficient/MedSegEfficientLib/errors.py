"""Errors a user can act on. The CLI prints each as one line; the Slicer panel shows it in a dialog."""


class MedSegError(Exception):
    """Base class: the message is meant for the user, not a traceback."""


class ModelFileError(MedSegError):
    """A model file that is missing, truncated, hostile or has an invalid card."""


class InputImageError(MedSegError):
    """An image the model cannot take (unreadable, wrong dimension, NaN voxels, ...)."""


class NetworkConfigError(MedSegError):
    """An unknown network name or preset, or constructor arguments the network rejects."""


class Cancelled(MedSegError):
    """The user cancelled a run; nothing was written."""


class OutputError(MedSegError):
    """An output that cannot be written as asked (unknown format, the input itself, an unwritable folder)."""


class NotEnoughMemoryError(InputImageError):
    """A run refused before it starts because this machine has too little free memory for it; a server tells its
    client only that, never the figures."""
