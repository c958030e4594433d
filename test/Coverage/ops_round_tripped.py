#!/usr/bin/env python3
"""Checks that every op of the moe dialect appears in the round-trip test.

The op list comes from the generated op reference (one `### \\`moe.x\\``
heading per op), so a new op in MoEOps.td without a round-trip case fails.
usage: ops_round_tripped.py GENERATED_DOC.md ops.mlir
"""

import re
import sys


def main(argv):
    if len(argv) != 3:
        print(__doc__)
        return 2
    with open(argv[1]) as f:
        ops = re.findall(r"^### `(moe\.\w+)`", f.read(), re.MULTILINE)
    with open(argv[2]) as f:
        test = f.read()
    missing = [op for op in ops if not re.search(re.escape(op) + r"\b", test)]
    for op in missing:
        print(f"{argv[2]}: no round-trip case for {op}")
    print(f"{len(ops) - len(missing)} of {len(ops)} moe ops are round-tripped")
    return 1 if missing or not ops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
