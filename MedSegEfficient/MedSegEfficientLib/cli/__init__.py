"""The ``medseg`` command line: one module per command family."""
