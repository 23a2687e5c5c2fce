"""`python -m ledger.cli ...`, as the devnet launcher starts nodes (same as the `ledger` script)."""

import sys

from ledger.cli import main

sys.exit(main())
