"""MedSegEfficient core: efficient medical image segmentation without Qt or Slicer.

Dependency direction: ``networks`` <- ``engine`` <- (``cli``, ``scene``) <- the Slicer module.
"""

__version__ = "0.1.0"
