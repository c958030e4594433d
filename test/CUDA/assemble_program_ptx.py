#!/usr/bin/env python3
"""Checks the generated kernels of a program compiled with --target cuda.

    assemble_program_ptx.py PROGRAM.moe PTXAS ARCH

For every `launch` operation, each launch of its list must name a kernel
(`.entry`) of one of the program's `gpu-module` records and pass it as many
parameters as the entry declares. Every module's PTX is assembled with
`PTXAS -arch=ARCH`, and its cubin, when the record carries one, must be a
CUDA ELF (machine 190) for the architecture the record names. Prints one
line per module (its entries, the PTX target and cubin sizes), the count of
each operation of the program, and a summary; exits 1 naming the module,
operation or launch that fails.
"""

import base64
import struct

import os
import re
import subprocess
import sys
import tempfile
import urllib.parse


def decode(text):
    """Undoes the program format's percent-encoding."""
    return urllib.parse.unquote(text, errors="strict")


def entries(ptx):
    """The kernel entries of a PTX module and their parameter counts."""
    found = {}
    for match in re.finditer(r"\.entry (\w+)\((.*?)\)", ptx, re.S):
        found[match.group(1)] = len(re.findall(r"\.param ", match.group(2)))
    return found


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: assemble_program_ptx.py PROGRAM.moe PTXAS ARCH")
    program, ptxas, arch = sys.argv[1:]
    modules = {}
    cubins = {}
    launch_ops = []
    counts = {}
    with open(program, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            words = line.split()
            if words[:1] == ["gpu-module"]:
                modules[decode(words[1])] = decode(words[2])
                if len(words) == 5:
                    cubins[decode(words[1])] = (decode(words[3]),
                                                base64.b64decode(words[4],
                                                                 validate=True))
            if words[:1] == ["op"]:
                counts[words[1]] = counts.get(words[1], 0) + 1
            if words[:2] == ["op", "launch"]:
                attrs = dict(word.split("=", 1) for word in words
                             if "=" in word and ":" in word.split("=", 1)[1])
                launch_ops.append((number, decode(attrs["launches"][2:])))
    if not modules or not launch_ops:
        sys.exit(f"{program}: no gpu-module records or launch operations "
                 "(was it compiled with --target cuda?)")
    kernels = {name: entries(ptx) for name, ptx in modules.items()}
    launches = 0
    for number, text in launch_ops:
        for item in text.split(";"):
            fields = item.split()
            if fields[0] == "copy":
                continue
            module, kernel = fields[0].split(":")
            arguments = len(fields) - 3
            if kernel not in kernels.get(module, {}):
                sys.exit(f"{program}:{number}: launch '{item}' names no "
                         f"kernel of the program's gpu-module records")
            if kernels[module][kernel] != arguments:
                sys.exit(f"{program}:{number}: launch '{item}' passes "
                         f"{arguments} parameters; {module}:{kernel} takes "
                         f"{kernels[module][kernel]}")
            launches += 1
    with tempfile.TemporaryDirectory() as work:
        for name, ptx in sorted(modules.items()):
            ptx_path = os.path.join(work, name + ".ptx")
            cubin_path = os.path.join(work, name + ".cubin")
            with open(ptx_path, "w", encoding="utf-8") as f:
                f.write(ptx)
            result = subprocess.run(
                [ptxas, f"-arch={arch}", ptx_path, "-o", cubin_path],
                capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"{program}: ptxas rejected gpu-module {name}:\n"
                         f"{result.stderr}")
            target = re.search(r"^\.target (\w+)", ptx, re.M)
            carried = ""
            if name in cubins:
                chip, cubin = cubins[name]
                check_cubin(program, name, chip, cubin)
                carried = f", a {chip} cubin carried"
            print(f"module {name} {' '.join(sorted(kernels[name]))}: PTX for "
                  f"{target.group(1) if target else '?'}, "
                  f"{os.path.getsize(cubin_path)} bytes assembled{carried}")
    print("operations: " + ", ".join(f"{op} {count}" for op, count
                                      in sorted(counts.items())))
    print(f"{len(modules)} modules assembled, {len(cubins)} carry a cubin; "
          f"{launches} launches in {len(launch_ops)} launch operations match "
          f"their kernels")


def check_cubin(program, name, chip, cubin):
    """A CUDA ELF whose flags name `chip` (sm_90a: 90 in bits 8 to 15)."""
    if cubin[:4] != b"\x7fELF" or len(cubin) < 52:
        sys.exit(f"{program}: the cubin of gpu-module {name} is not ELF")
    machine = struct.unpack_from("<H", cubin, 18)[0]
    flags = struct.unpack_from("<I", cubin, 48)[0]
    number = re.match(r"sm_(\d+)", chip)
    if machine != 190 or not number or (flags >> 8) & 0xFF != int(number[1]):
        sys.exit(f"{program}: the cubin of gpu-module {name} is for machine "
                 f"{machine}, sm {(flags >> 8) & 0xFF}; expected CUDA "
                 f"(190), {chip}")


if __name__ == "__main__":
    main()
