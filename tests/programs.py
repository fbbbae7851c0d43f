"""How the tests run a program: with an argument vector (never a shell line), in the
environment ctest gives mpirun (root allowed, cores oversubscribed), asserting the
exit status. The `run` fixture (conftest.py) is this; helper modules and the
benchmarks import it directly."""

import os
import subprocess


def mpi_env(extra=None):
    """The environment of every program a test runs: mpirun may run as root and
    oversubscribe the cores (as ctest sets it), plus `extra`."""
    return dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                OMPI_MCA_rmaps_base_oversubscribe="1", **(extra or {}))


def run_program(cmd, expect=0, env=None, timeout=600, **kwargs):
    """Runs `cmd` (an argument vector, never a shell line) and asserts that it exits
    with `expect` (None: any status); the assertion shows the command and its
    output. Returns the CompletedProcess, output as text."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=mpi_env(env),
                       timeout=timeout, **kwargs)
    if expect is not None:
        assert p.returncode == expect, (
            f"{' '.join(map(str, cmd))} exited {p.returncode}, expected {expect}\n"
            f"--- stdout\n{p.stdout[-4000:]}\n--- stderr\n{p.stderr[-4000:]}")
    return p
