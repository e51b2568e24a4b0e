"""The gated linear-attention family: the attention core, MLLA-UNet and HRMedSeg, and their fused CUDA paths."""
