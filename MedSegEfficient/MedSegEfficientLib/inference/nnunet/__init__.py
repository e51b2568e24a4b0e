"""nnU-Net's own pipeline around an imported nnU-Net network: its crop, resampling, tiles and export."""
