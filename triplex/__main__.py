"""``python -m triplex``: the ``triplex`` command (for torchrun: ``torchrun ... -m triplex train ...``)."""

import sys

from triplex.cli import main

sys.exit(main())
