"""``python -m benchmarks [--quick] [--out FILE] [--threads N] [--data-dir DIR] [--no-progress]``.

The same command as ``stochrelax bench``, through the CLI: its arguments, its help and
its one-line errors.
"""

import sys

from stochrelax.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
