"""``python -m nbtrack.cli``: the ``nbtrack`` command (batch replays start one process per run)."""

import sys

from nbtrack.cli import main

sys.exit(main())
