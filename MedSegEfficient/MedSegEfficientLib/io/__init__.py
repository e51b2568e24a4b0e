"""Files in and out: images, Slicer .seg.nrrd, PNG overlays and the real sample data."""
