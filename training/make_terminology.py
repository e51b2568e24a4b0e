"""Writes the package's terminology file (MedSegEfficientLib/model/data): the shipped models' label codes that
Slicer's terminology lists lack.

  python training/make_terminology.py [SLICER_TERMINOLOGY_FOLDER]   (the folder of Slicer's
  SegmentationCategoryTypeModifier-*.json; default: the copies in Testing/data/slicer)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from MedSegEfficientLib.model.library import SHIPPED_MODELS_DIR
from MedSegEfficientLib.model.model_file import read_card
from MedSegEfficientLib.model.terminology import EXTRA_FILE, extra_terminology, listed_keys


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "Testing" / "data" / "slicer"
    slicer_keys = set().union(*(listed_keys(json.loads(path.read_text()))
                                for path in folder.glob("SegmentationCategoryTypeModifier-*.json")))
    labels = [label for path in sorted(SHIPPED_MODELS_DIR.glob("*.safetensors")) for label in read_card(path).labels]
    EXTRA_FILE.parent.mkdir(parents=True, exist_ok=True)
    EXTRA_FILE.write_text(json.dumps(extra_terminology(labels, slicer_keys), indent=1) + "\n")
    print(f"wrote {EXTRA_FILE}")


if __name__ == "__main__":
    main()
