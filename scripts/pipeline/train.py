#!/usr/bin/env python3
"""Train, validate, export and publish a model version: `--help` for the options.

The work is in scripts/lib/pipeline/training.py; this is the command.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from pipeline.training import parse_args, run  # noqa: E402


def main(argv=None) -> int:
    args = parse_args(argv)
    final = run(args)
    print(final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
