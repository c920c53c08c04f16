"""`python -m tools.preflight` (and `make preflight`): see tools/preflight/__init__.py."""

import sys

from tools.preflight.cli import main

sys.exit(main())
