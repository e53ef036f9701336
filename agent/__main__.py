"""`python -m crashfleet.agent`: the same as running the zipapp."""

import sys

from .main import main

sys.exit(main())
