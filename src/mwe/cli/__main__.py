"""`python -m mwe.cli`: the `mwe` command."""

import sys

from mwe.cli import main

sys.exit(main())
