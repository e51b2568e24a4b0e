"""``python -m MedSegEfficientLib.cli``: the ``medseg`` command without its console script."""

import sys

from MedSegEfficientLib.cli.main import main

sys.exit(main())
