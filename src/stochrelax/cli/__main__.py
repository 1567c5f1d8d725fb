"""``python -m stochrelax.cli``."""

import sys

from stochrelax.cli import main

sys.exit(main())
