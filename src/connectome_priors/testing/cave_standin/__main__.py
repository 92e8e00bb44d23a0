"""``python -m connectome_priors.testing.cave_standin``."""

from .cli import main

raise SystemExit(main())
