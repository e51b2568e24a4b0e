"""What the Slicer module runs: its Logic, the MRML scene glue, background runs, dependencies."""
