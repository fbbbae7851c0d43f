#!/usr/bin/python3
"""The layer order of smoe's sources: each part includes only its own headers and
those of the parts before it, and MPI appears only in parallel/ (and the tests of
it). Exits 1 naming every include against the order.

  core -> io -> text -> model -> parallel -> stats -> prune -> {eval, train, data} -> cli
"""
import os
import re
import sys

ORDER = {"core": 0, "io": 1, "text": 2, "model": 3, "parallel": 4, "stats": 5, "prune": 6,
         "eval": 7, "train": 7, "data": 7, "cli": 8}
MPI = re.compile(r"#include <mpi\.h>|\bMPI_[A-Z][a-z_]*\(|\bMPI_COMM_WORLD\b|\bMPI_Comm\b")


def faults(root):
    for base in ("src", "include/smoe"):
        for folder, _, files in os.walk(os.path.join(root, base)):
            for name in sorted(files):
                path = os.path.join(folder, name)
                part = os.path.relpath(path, os.path.join(root, base)).split(os.sep)[0]
                if part not in ORDER:
                    yield f"{path}: in no layer (known: {', '.join(ORDER)})"
                    continue
                with open(path, encoding="utf-8") as f:
                    for line_no, line in enumerate(f, 1):
                        m = re.match(r'#include "smoe/(\w+)/', line)
                        if m and m.group(1) != part and ORDER.get(m.group(1), 99) >= ORDER[part]:
                            yield f"{path}:{line_no}: {part}/ includes {m.group(1)}/: {line.strip()}"
                        if part != "parallel" and MPI.search(line):
                            yield f"{path}:{line_no}: MPI outside parallel/: {line.strip()}"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    found = list(faults(root))
    for fault in found:
        print(fault)
    print(f"layering: {len(found)} fault(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
