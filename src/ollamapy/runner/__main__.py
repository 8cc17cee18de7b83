"""Entry point of a runner process; see `ollamapy.runner.server` for the protocol."""

from __future__ import annotations

import sys

from ollamapy.runner.server import main

if __name__ == "__main__":
    sys.exit(main())
