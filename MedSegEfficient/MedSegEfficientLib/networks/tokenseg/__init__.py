"""TokenSeg: hierarchical sparse tokens, vector quantisation and sparse refinement."""
