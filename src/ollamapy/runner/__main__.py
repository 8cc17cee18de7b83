"""Entry point of a runner process; see `ollamapy.runner.server` for the protocol."""

from __future__ import annotations

import os
import sys

from ollamapy.runner.startup import model_argument, quiet_openmp

if __name__ == "__main__":
    model = model_argument(sys.argv[1:])
    if model is not None:
        quiet_openmp(os.environ, model)  # before llama.cpp is loaded (see `startup`)
    from ollamapy.runner.server import main

    sys.exit(main())
