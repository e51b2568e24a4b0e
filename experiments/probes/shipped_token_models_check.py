"""The shipped 2D token models' GPU inference paths (fused Triton kernels, cuBLAS wide blocks) against their torch
modules, with the trained weights: logits error relative to their spread and argmax agreement, fp16 autocast.

    python3 experiments/probes/shipped_token_models_check.py [--models abdomen_ct_mlla_unet,abdomen_ct_hrmedseg] [--json FILE]

The input is a smooth random image at the model's slice size (not noise: trained networks see structure), 4
slices. Random weights (token_network_check.py) leave many near-ties; trained ones show what a user's labels see.
"""

from __future__ import annotations

import argparse
import json
import sys
from unittest import mock

import torch
import torch.nn.functional as F

from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.networks.linear_attention import token_layout


def smooth_image(slices: int, channels: int, size: int) -> torch.Tensor:
    coarse = torch.randn(slices, channels, size // 16, size // 16, device="cuda")
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)


def check(name: str) -> dict:
    model = load_model(name, device="cuda")
    size = max(model.card.patch_size or [512])
    torch.manual_seed(0)
    image = smooth_image(4, model.card.in_channels, size)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16):
        fast = model.network(image).float()
        with mock.patch.object(token_layout, "_triton_installed", lambda: False):
            plain = model.network(image).float()
    error = ((fast - plain).abs().mean() / plain.std()).item()
    agreement = (fast.argmax(1) == plain.argmax(1)).float().mean().item()
    return {"model": name, "input": list(image.shape), "mean_error_over_std": error, "label_agreement": agreement,
            "ok": error < 1e-2 and agreement > 0.999}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="abdomen_ct_mlla_unet,abdomen_ct_hrmedseg")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [check(name) for name in args.models.split(",")]
    report = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(report, stream, indent=1)
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
