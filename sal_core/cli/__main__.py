"""`python -m sal_core.cli` runs the `sal` command (handy where the entry point is not on PATH)."""

import sys

from sal_core.cli import main

sys.exit(main())
