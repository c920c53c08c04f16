"""`python -m glue_runtime /glue/glue.py`: the glue container's command."""

import sys

from .runtime import main

sys.exit(main(sys.argv))
