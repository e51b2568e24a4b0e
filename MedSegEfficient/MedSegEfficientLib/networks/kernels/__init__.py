"""Hand-written Triton kernels for half-precision CUDA inference (imported only on CUDA)."""
