"""Importing pretrained encoders: MLLA ImageNet backbones into MLLA-UNet, HRMedSeg's distilled encoder + neck.
The files are written here in the publishers' formats (their key names and shapes, docs/networks.md sections 3 and 5),
with random values, the persistent RoPE buffers and, for HRMedSeg, a ``module.`` prefix."""

from __future__ import annotations

import pytest
import torch
from MedSegEfficientLib.model.weights import load_model
from MedSegEfficientLib.cli.main import main
from MedSegEfficientLib.networks.rope import rope_rotations


def _conv_bn(out, cin, k, prefix, bias=False, bn=True, groups=1):
    entries = {f"{prefix}.conv.weight": (out, cin // groups, k, k)}
    if bias:
        entries[f"{prefix}.conv.bias"] = (out,)
    if bn:
        entries.update({f"{prefix}.norm.{n}": (out,) for n in ("weight", "bias", "running_mean", "running_var")})
    return entries


def _linear(prefix, cout, cin, bias=True):
    return {f"{prefix}.weight": (cout, cin), **({f"{prefix}.bias": (cout,)} if bias else {})}


def mlla_t_shapes(dim=64, depths=(2, 4, 8, 4), size=224):
    """MLLA-T as LeapLabTHU publishes it: stem, blocks, downsamplers, norm, classifier head."""
    shapes = {**_conv_bn(dim // 2, 3, 3, "patch_embed.conv1"), **_conv_bn(dim // 2, dim // 2, 3, "patch_embed.conv2.0"),
              **_conv_bn(dim // 2, dim // 2, 3, "patch_embed.conv2.1"), **_conv_bn(4 * dim, dim // 2, 3, "patch_embed.conv3.0"),
              **_conv_bn(dim, 4 * dim, 1, "patch_embed.conv3.1")}
    grid = size // 4
    for s, depth in enumerate(depths):
        c = dim * 2 ** s
        for b in range(depth):
            p = f"layers.{s}.blocks.{b}"
            for conv in ("cpe1", "dwc", "cpe2", "attn.lepe"):
                shapes.update({f"{p}.{conv}.weight": (c, 1, 3, 3), f"{p}.{conv}.bias": (c,)})
            for norm in ("norm1", "norm2"):
                shapes.update({f"{p}.{norm}.weight": (c,), f"{p}.{norm}.bias": (c,)})
            for name, cout, cin in (("in_proj", c, c), ("act_proj", c, c), ("out_proj", c, c), ("attn.qk", 2 * c, c),
                                    ("mlp.fc1", 4 * c, c), ("mlp.fc2", c, 4 * c)):
                shapes.update(_linear(f"{p}.{name}", cout, cin))
            shapes[f"{p}.attn.rope.rotations"] = "rope", grid, c
        if s < len(depths) - 1:
            hidden = 8 * c
            shapes.update({**_conv_bn(hidden, c, 1, f"layers.{s}.downsample.conv.0", bias=True, bn=False),
                           **_conv_bn(hidden, hidden, 3, f"layers.{s}.downsample.conv.1", bias=True, bn=False, groups=hidden),
                           **_conv_bn(2 * c, hidden, 1, f"layers.{s}.downsample.conv.2", bias=True)})
            grid //= 2
    last = dim * 2 ** (len(depths) - 1)
    shapes.update({"norm.weight": (last,), "norm.bias": (last,), **_linear("head", 1000, last)})
    return shapes


def hrmedseg_pfd_shapes(dim=96, depths=(2, 6, 2)):
    """The PFD student (LGViT + neck) as the authors' state dict names it."""
    shapes = {"image_encoder.patch_embed.proj.weight": (dim, 3, 16, 16), "image_encoder.patch_embed.proj.bias": (dim,)}
    for b in range(2):
        p = f"image_encoder.layers.0.blocks.{b}"
        for k, (cout, cin, size, groups) in enumerate([(2 * dim, dim, 1, 1), (2 * dim, 2 * dim, 3, 2 * dim), (dim, 2 * dim, 1, 1)], 1):
            shapes[f"{p}.conv{k}.c.weight"] = (cout, cin // groups, size, size)
            shapes.update({f"{p}.conv{k}.bn.{n}": (cout,) for n in ("weight", "bias", "running_mean", "running_var")})
    for s, depth in enumerate(depths, 1):
        for b in range(depth):
            p = f"image_encoder.layers.{s}.blocks.{b}"
            for norm in ("norm1", "norm2"):
                shapes.update({f"{p}.{norm}.weight": (dim,), f"{p}.{norm}.bias": (dim,)})
            for name, cout, cin in (("act_proj", dim, dim), ("out_proj", dim, dim), ("attn.qk", 2 * dim, dim),
                                    ("attn.up_proj", dim // 4, dim), ("attn.down_proj", dim, dim // 4),
                                    ("mlp.fc1", 2 * dim, dim), ("mlp.fc2", dim, 2 * dim)):
                shapes.update(_linear(f"{p}.{name}", cout, cin))
            shapes.update({f"{p}.attn.lepe.weight": (dim, 1, 3, 3), f"{p}.attn.lepe.bias": (dim,),
                           f"{p}.attn.rope.rotations": ("rope", 64, dim)})
    shapes.update({"neck.0.weight": (256, dim, 1, 1), "neck.1.weight": (256,), "neck.1.bias": (256,),
                   "neck.2.weight": (256, 256, 3, 3), "neck.3.weight": (256,), "neck.3.bias": (256,)})
    return shapes


def materialise(shapes, prefix=""):
    torch.manual_seed(0)
    tensors = {}
    for key, shape in shapes.items():
        if shape[0] == "rope":
            tensors[prefix + key] = rope_rotations(shape[1], shape[1], shape[2])
        else:
            tensors[prefix + key] = torch.randn(shape).abs() if key.endswith("running_var") else torch.randn(shape)
    return tensors


def test_mlla_imagenet_backbone_fills_the_encoder(tmp_path):
    weights = materialise(mlla_t_shapes())
    source, output = tmp_path / "MLLA-T.pth", tmp_path / "mlla.safetensors"
    torch.save({"model": weights, "epoch": 299}, source)
    assert main(["import", "mlla-imagenet", str(source), "-o", str(output), "--classes", "9"]) == 0
    model = load_model(output)
    state = model.network.state_dict()
    for key, tensor in weights.items():
        if key.startswith("head.") or key.endswith("rope.rotations"):
            assert key not in state
        else:
            assert torch.equal(state[key], tensor), key
    assert model.card.out_channels == 9 and sum(p.numel() for p in model.network.parameters()) == pytest.approx(28.51e6, rel=0.02)


def test_hrmedseg_pfd_fills_encoder_and_neck_under_a_module_prefix(tmp_path):
    weights = materialise(hrmedseg_pfd_shapes(), prefix="module.")
    source, output = tmp_path / "SAM_PFD_10K.pth", tmp_path / "hr.safetensors"
    torch.save(weights, source)
    assert main(["import", "hrmedseg-pfd", str(source), "-o", str(output)]) == 0
    model = load_model(output)
    state = model.network.state_dict()
    assert torch.equal(state["image_encoder.patch_embed.weight"], weights["module.image_encoder.patch_embed.proj.weight"])
    assert torch.equal(state["image_encoder.convs.1.conv2.conv.weight"], weights["module.image_encoder.layers.0.blocks.1.conv2.c.weight"])
    assert torch.equal(state["image_encoder.blocks.2.attn.qk.weight"], weights["module.image_encoder.layers.2.blocks.0.attn.qk.weight"])
    assert torch.equal(state["image_encoder.blocks.9.mlp.fc2.bias"], weights["module.image_encoder.layers.3.blocks.1.mlp.fc2.bias"])
    assert torch.equal(state["neck.2.weight"], weights["module.neck.2.weight"])
    assert model.card.normalization.kind == "imagenet" and model.card.patch_size == [1024, 1024]


def test_wrong_rope_buffer_or_missing_tensor_is_refused(tmp_path, capsys):
    weights = materialise(hrmedseg_pfd_shapes())
    weights["image_encoder.layers.1.blocks.0.attn.rope.rotations"] = rope_rotations(64, 64, 96).flip(0)
    source, output = tmp_path / "pfd.pth", tmp_path / "hr.safetensors"
    torch.save(weights, source)
    assert main(["import", "hrmedseg-pfd", str(source), "-o", str(output)]) == 2
    assert "RoPE" in capsys.readouterr().err and not output.exists()
    weights = materialise(mlla_t_shapes())
    del weights["layers.2.blocks.3.attn.qk.weight"]
    torch.save({"model": weights}, source)
    assert main(["import", "mlla-imagenet", str(source), "-o", str(output)]) == 2
    assert "missing" in capsys.readouterr().err and not output.exists()


@pytest.mark.parametrize("wrapped", [False, True])
def test_hrmedseg_pfd_import_gives_the_authors_features(tmp_path, wrapped):
    """Saved from the authors' module tree (their names: up_proj narrows, down_proj widens), the imported encoder
    and neck compute the features their student computes, within 1e-4 of their scale."""
    from authors_hrmedseg_layout import AuthorsPFDStudent
    from authors_mlla_unet_layout import randomised

    authors = randomised(AuthorsPFDStudent(image_size=256))
    state = authors.state_dict()
    if wrapped:  # their pfd_pretrain.py trains under nn.DataParallel
        state = {f"module.{key}": value for key, value in state.items()}
    source, output = tmp_path / "SAM_PFD_10K.pth", tmp_path / "hr.safetensors"
    torch.save(state, source)
    assert main(["import", "hrmedseg-pfd", str(source), "-o", str(output)]) == 0
    network = load_model(output).network
    image = torch.randn(2, 3, 256, 256)
    with torch.inference_mode():
        theirs, ours = authors(image), network.neck(network.image_encoder(image))
    assert ours.shape == theirs.shape == (2, 256, 16, 16)
    assert float((ours - theirs).abs().max() / theirs.abs().max()) < 1e-4
