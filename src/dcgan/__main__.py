"""`python -m dcgan ...` (what `torchrun -m dcgan train ...` runs)."""

import sys

from dcgan.cli import main

sys.exit(main())
