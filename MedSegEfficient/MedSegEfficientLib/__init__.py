"""MedSegEfficient core: efficient medical image segmentation without Qt or Slicer.

Wings, each a subpackage, and the one direction their imports run (never back up; docs/architecture.md):
``networks`` <- ``model`` <- ``io`` <- ``inference`` <- ``training`` <- ``importers`` <- ``batch``
<- (``cli``, ``slicer``) <- the Slicer module. ``errors``, ``volume``, ``files`` and ``metrics`` sit under all of them.
"""

__version__ = "0.1.0"
