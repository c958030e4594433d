#!/usr/bin/env python3
"""Assembles every kernel module of an MLIR file with ptxas.

    assemble_ptx.py IN.mlir PTXAS ARCH

gpu-kernel-outlining puts each kernel in its own gpu.module, so
gpu-module-to-binary (format=isa) leaves one gpu.binary per kernel, its PTX
in the object's `assembly = "..."` string. Each is written to a temporary
file and assembled with `PTXAS -arch=ARCH`; for each the script prints
`kernel <entry names>: <bytes> bytes of cubin`. Exits 1 naming the module
when there is none or ptxas fails.
"""

import os
import re
import subprocess
import sys
import tempfile

from extract_ptx import decode_assembly


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: assemble_ptx.py IN.mlir PTXAS ARCH")
    source, ptxas, arch = sys.argv[1:]
    with open(source, encoding="utf-8") as f:
        text = f.read()
    binaries = re.findall(r'gpu\.binary @(\w+).*?assembly = "((?:[^"\\]|\\.)*)"',
                          text, re.S)
    if not binaries:
        sys.exit(f"assemble_ptx.py: {source}: no gpu.binary object with an "
                 "assembly string (was it built with format=isa?)")
    with tempfile.TemporaryDirectory() as work:
        for name, assembly in binaries:
            ptx = decode_assembly(assembly)
            ptx_path = os.path.join(work, name + ".ptx")
            cubin_path = os.path.join(work, name + ".cubin")
            with open(ptx_path, "w", encoding="utf-8") as f:
                f.write(ptx)
            result = subprocess.run([ptxas, f"-arch={arch}", ptx_path, "-o",
                                     cubin_path], capture_output=True,
                                    text=True)
            if result.returncode != 0:
                sys.exit(f"assemble_ptx.py: {source}: ptxas rejected module "
                         f"{name}:\n{result.stderr}")
            entries = re.findall(r"\.entry (\w+)\(", ptx)
            print(f"kernel {name} {' '.join(entries)}: "
                  f"{os.path.getsize(cubin_path)} bytes of cubin")


if __name__ == "__main__":
    main()
