"""``python -m connectome_priors.cli``."""

import sys

from . import main

sys.exit(main())
