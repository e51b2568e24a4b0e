"""Training on partly labelled scans: a loss that ignores the classes a scan does not label (the marginal loss of
Shi et al., "Marginal loss and exclusion loss for partially supervised multi-organ segmentation", MedIA 2021).

A scan that labels only the aorta says, for each voxel outside the aorta, "background *or* one of the structures I
do not label". So the network's probabilities of the unlabelled classes are added to its background probability
before the loss is taken. A voxel of liver in such a scan then costs nothing whether the network calls it liver or
background. Dice is averaged over the labelled classes alone. On a fully labelled scan the loss is the usual softmax
Dice + cross-entropy (MONAI's ``DiceCELoss``), so both kinds of scan train in one batch.
"""

from __future__ import annotations

import numpy as np
import torch

from MedSegEfficientLib.errors import MedSegError
from MedSegEfficientLib.model.card import ModelCard

SMOOTH = 1e-5  # MONAI DiceLoss's smooth_nr and smooth_dr, so that a full mask gives its figures exactly


def labelled_classes(card: ModelCard, names: list[str] | None, source: str) -> np.ndarray:
    """Which classes (channel 0, background, included) a label map annotates; ``names`` None: all of them."""
    values = {label.name: label.value for label in card.labels}
    names = list(values) if names is None else names
    unknown = [name for name in names if name not in values]
    if unknown:
        raise MedSegError(f"{source}: 'labelled' names {', '.join(unknown)}, which the model does not have "
                          f"(its labels: {', '.join(values)})")
    chosen = np.zeros(card.out_channels, bool)
    chosen[0] = True
    chosen[[values[name] for name in names]] = True
    return chosen


def marginal_dice_ce(logits: torch.Tensor, labels: torch.Tensor, labelled: torch.Tensor) -> torch.Tensor:
    """Softmax Dice + cross-entropy where each batch item's unlabelled classes count as background.

    logits (B, K, ...), labels (B, 1, ...) integer, labelled (B, K) bool with channel 0 True. A voxel whose label is
    a class its item does not label is a contradiction in the data and is refused.
    """
    batch, classes = logits.shape[:2]
    labelled = labelled.to(device=logits.device, dtype=torch.bool)
    spread = (batch, classes) + (1,) * (logits.dim() - 2)
    unlabelled = (~labelled).view(spread)
    log_probabilities = torch.log_softmax(logits.float(), dim=1)
    # Background's share, in log space (large logits under mixed precision): background and every unlabelled class.
    into_background = unlabelled.clone()
    into_background[:, 0] = True
    log_background = torch.logsumexp(log_probabilities.masked_fill(~into_background, float("-inf")), dim=1)
    log_folded = log_probabilities.masked_fill(unlabelled, float("-inf"))
    log_folded[:, 0] = log_background
    folded = log_folded.exp()
    target = labels[:, 0].long()
    if bool(torch.gather(~labelled, 1, target.flatten(1)).any()):
        raise MedSegError("a label map has a value for a class it says it does not label ('labelled' in dataset.json)")
    one_hot = torch.nn.functional.one_hot(target, classes).movedim(-1, 1).float()
    cross_entropy = -torch.gather(log_folded, 1, target[:, None]).mean()
    axes = tuple(range(2, logits.dim()))
    overlap = (folded * one_hot).sum(axes)
    dice_loss = 1.0 - (2.0 * overlap + SMOOTH) / (folded.sum(axes) + one_hot.sum(axes) + SMOOTH)
    dice = (dice_loss * labelled).sum() / labelled.sum()
    return dice + cross_entropy
