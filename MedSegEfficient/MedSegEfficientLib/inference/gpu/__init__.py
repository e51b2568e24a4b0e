"""Device choice and the GPU's fast paths: CUDA graphs, slice staging, label download."""
