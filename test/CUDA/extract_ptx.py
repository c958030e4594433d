#!/usr/bin/env python3
"""Writes the PTX of the first gpu.binary object of an MLIR file.

    extract_ptx.py IN.mlir OUT.ptx

gpu-module-to-binary with format=isa stores the PTX as the object's
`assembly = "..."` string, printed with MLIR's escapes (\\XX hex for
non-printing bytes, \\\\ for a backslash). Exits 1 naming the file when there
is none.
"""

import re
import sys


def decode_assembly(escaped):
    """The PTX text of an `assembly = "..."` string, escapes undone."""
    return re.sub(r"\\([0-9A-Fa-f]{2})|\\\\",
                  lambda m: chr(int(m.group(1), 16)) if m.group(1) else "\\",
                  escaped)


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: extract_ptx.py IN.mlir OUT.ptx")
    source, target = sys.argv[1], sys.argv[2]
    with open(source, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r'assembly = "((?:[^"\\]|\\.)*)"', text)
    if not match:
        sys.exit(f"extract_ptx.py: {source}: no gpu.binary object with "
                 "an assembly string (was it built with format=isa?)")
    with open(target, "w", encoding="utf-8") as f:
        f.write(decode_assembly(match.group(1)))


if __name__ == "__main__":
    main()
