#!/usr/bin/env python3
"""Preprocess raw records as the training pipeline does, one verdict per record.

    .venv/bin/python scripts/pipeline/featurize.py --manifest models/conversion/<version>/model.json \\
        --now 2026-11-24T00:00:00Z < records.jsonl > verdicts.jsonl

Reads one JSON record per line on stdin (NaN and Infinity literals allowed, as
Python's json reads them) and writes one JSON line per record on stdout:
{"ok": true, "features": [...]} or {"ok": false, "field": "...", "error": "..."}.
The manifest's fields are checked first, as strictly as the server checks them
(exit code 2 and one line on stderr if they are refused). The differential
test of the two preprocessing implementations drives this command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from pipeline import features as F  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", required=True, help="model.json whose fields define the contract")
    ap.add_argument("--now", required=True, help="request time for age transforms (ISO 8601)")
    args = ap.parse_args(argv)
    fields = json.loads(Path(args.manifest).read_text(encoding="utf-8"))["fields"]
    try:
        F.validate_fields(fields)
        now_ms = F.parse_iso_date_ms(args.now)
    except ValueError as e:
        print(f"featurize: {e}", file=sys.stderr)
        return 2
    out = sys.stdout
    # Split on b"\n" only: U+2028 and friends may sit inside a JSON string.
    for line in sys.stdin.buffer:
        if line.strip():
            verdict = F.outcome(fields, json.loads(line), now_ms)
            out.write(json.dumps(verdict, allow_nan=False) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
