"""What a model's own card says it does poorly: labels whose held-out Dice is low, and labels it never validated.

Every run says so beside its result (the engine's notices reach `medseg segment`, the panel, the server's replies
and `--json` reports). A user who gets a spleen from a model that found the spleen at Dice 0.00 on its held-out scan should not
have to read the card to learn that.
"""

from __future__ import annotations

from MedSegEfficientLib.model.card import ModelCard

# Below this a structure's segment is more often wrong than right on the card's own held-out scans.
WEAK_DICE = 0.5


def weak_labels_notice(card: ModelCard) -> str | None:
    """One line naming the weak and the unvalidated labels, or None where the card states no validation."""
    dice = card.metrics.get("validation_dice") if isinstance(card.metrics, dict) else None
    if not dice:
        return None
    scans = ", ".join(card.metrics.get("validation_cases", [])) or "its validation scans"
    weak = [f"{label.name} {dice[label.name]:.2f}" for label in card.labels
            if isinstance(dice.get(label.name), (int, float)) and dice[label.name] < WEAK_DICE]
    unvalidated = [label.name for label in card.labels if dice.get(label.name) is None]
    parts = []
    if weak:
        parts.append(f"held-out Dice below {WEAK_DICE} for {', '.join(weak)}")
    if unvalidated:
        parts.append(f"{', '.join(unvalidated)} not in its validation scan(s)")
    if not parts:
        return None
    return f"model '{card.name}' (card, on {scans}): {'; '.join(parts)}: check these segments before use"
