"""Peer networks users know: the plain residual U-Net, MONAI's networks, nnU-Net's topologies."""
