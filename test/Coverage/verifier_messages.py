#!/usr/bin/env python3
"""Checks that every verifier message of the moe dialect has a negative test.

A message is one `emitOpError()` / `emitError()` chain in the C++ sources
given on the command line; it counts as tested when the longest string
literal of the chain occurs in an `expected-error` of the given .mlir tests.
Prints the untested messages and exits 1 if there are any.
"""

import re
import sys


def statement_rest(source, start):
    """The text from `start` to the `;` ending the statement, skipping `;` in
    string and character literals."""
    i = start
    while i < len(source):
        c = source[i]
        if c in "\"'":
            i += 1
            while source[i] != c:
                i += 2 if source[i] == "\\" else 1
        elif c == ";":
            return source[start:i]
        i += 1
    return source[start:]


def message_chains(source):
    """Yields (line, longest literal) for each diagnostic chain in `source`."""
    # Helpers shared with the importer write their reason to `whyNot`.
    for match in re.finditer(r"emit(?:Op)?Error\(\)|whyNot\s*<<", source):
        chain = statement_rest(source, match.end())
        # Adjacent literals ("a" "b") concatenate as in C++.
        chain = re.sub(r'"\s*\n\s*"', "", chain)
        literals = re.findall(r'"((?:[^"\\]|\\.)*)"', chain)
        if not literals:
            continue
        longest = max(literals, key=len).replace('\\"', '"').strip(" '")
        line = source.count("\n", 0, match.start()) + 1
        yield line, longest


def main(argv):
    if "--" not in argv:
        print("usage: verifier_messages.py SOURCES... -- TESTS...")
        return 2
    split = argv.index("--")
    sources, tests = argv[1:split], argv[split + 1:]
    expected = []
    for test in tests:
        with open(test) as f:
            expected += re.findall(r"expected-error[^{]*\{\{(.*)\}\}", f.read())
    missing = []
    total = 0
    for path in sources:
        with open(path) as f:
            for line, literal in message_chains(f.read()):
                total += 1
                if not any(literal in e for e in expected):
                    missing.append(f"{path}:{line}: untested message: {literal}")
    for m in missing:
        print(m)
    print(f"{total - len(missing)} of {total} verifier messages have an "
          f"expected-error test")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
