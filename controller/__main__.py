"""`python -m crashfleet.controller` is the `crashfleet` command."""

import sys

from .cli import main

sys.exit(main())
