"""Entry point of a runner process; see `ollamapy.runner.server` for the protocol."""

from __future__ import annotations

import os
import sys

from ollamapy.runner.launch import LaunchArgs
from ollamapy.runner.startup import quiet_openmp

if __name__ == "__main__":
    args = LaunchArgs.from_argv(sys.argv[1:])
    quiet_openmp(os.environ, args.model)  # before llama.cpp is loaded (see `startup`)
    from ollamapy.runner.server import run

    sys.exit(run(args))
