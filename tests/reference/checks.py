"""What the cross-check scripts share: their command-line arguments, a list of
checks that prints one line per check and ends the script with a non-zero status
if any failed, and the environment that lets mpirun run as root and oversubscribe
(as ctest sets it)."""

import argparse
import os
import shutil
import sys

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)
    return cond


def finish(name):
    if failures:
        sys.exit(f"{len(failures)} failed: {failures[:5]}")
    print(f"{name}: passed")


def mpi_env():
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_rmaps_base_oversubscribe="1")


def script_args(*extra, mpirun=False, fresh=True):
    """The arguments of a script that runs smoe: --smoe, --mpirun (with `mpirun`),
    the required options named in `extra`, and --workdir, which is made (emptied
    first when `fresh`)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoe", required=True)
    if mpirun:
        ap.add_argument("--mpirun", required=True)
    for name in extra:
        ap.add_argument(name, required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    if fresh:
        shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir, exist_ok=True)
    return a
