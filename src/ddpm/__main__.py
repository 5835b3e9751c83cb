"""``python -m ddpm`` (and ``torchrun -m ddpm``) is the ``ddpm`` command."""

import sys

from .cli import main

sys.exit(main())
