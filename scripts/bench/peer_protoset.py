#!/usr/bin/env python3
"""Writes a peer's gRPC contract as a protoset for ghz.

    .venv-peers/<peer>/bin/python scripts/bench/peer_protoset.py <pb2 module> <out.protoset>

The MLServer and KServe wheels ship only their compiled `*_pb2.py`, not the
.proto files ghz reads; tritonclient likewise. Each module embeds its file
descriptor, so this serialises it with every file it imports into a
`google.protobuf.FileDescriptorSet` (dependencies first), which ghz takes as
`--protoset`. Run by the peers' bootstrap step (scripts/lib/bench/peers/venvs.ts).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2


def protoset(module_name: str) -> bytes:
    module = importlib.import_module(module_name)
    out = descriptor_pb2.FileDescriptorSet()
    seen: set[str] = set()

    def add(fd) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        out.file.append(proto)

    add(module.DESCRIPTOR)
    return out.SerializeToString()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    data = protoset(argv[0])
    Path(argv[1]).write_bytes(data)
    print(f"wrote {argv[1]} ({len(data)} bytes) from {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
