"""What the cross-check scripts share: a list of checks that prints one line per
check and ends the script with a non-zero status if any failed, and the
environment that lets mpirun run as root and oversubscribe (as ctest sets it)."""

import os
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
