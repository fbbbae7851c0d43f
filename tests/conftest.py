"""What every Python cross-check shares, as pytest fixtures: the paths given on the
command line (--smoe, --mpirun, --tool, --family, --workdir), a working folder made
fresh for the session, `run`, the one way a test runs a program, and `on_ranks`,
the mpirun prefix for n ranks.

ctest runs each file on its own (tests/CMakeLists.txt, SMOE_PYTEST), for example
  /usr/bin/python3 -m pytest -c tests/pytest.ini tests/reference/test_families.py \\
      --smoe build/smoe --family mixtral --workdir /tmp/families
"""

import os
import shutil

import pytest

from programs import run_program

OPTIONS = {
    "--smoe": "the smoe binary under test",
    "--mpirun": "mpirun of the MPI that smoe was built with",
    "--tool": "the clustering tool (tests/reference/clustering-tool.cpp), or the GPU check (tests/gpu/test-gpu.cpp)",
    "--family": "the model family a family check runs for",
    "--workdir": "a folder for the test's files; emptied first",
}


def pytest_addoption(parser):
    for name, what in OPTIONS.items():
        parser.addoption(name, help=what)


def option(config, name):
    value = config.getoption(name)
    if value is None:
        raise pytest.UsageError(f"{name} ({OPTIONS[name]}) is required by this test file")
    return value


@pytest.fixture(scope="session")
def smoe(pytestconfig):
    return os.path.abspath(option(pytestconfig, "--smoe"))


@pytest.fixture(scope="session")
def mpirun(pytestconfig):
    return option(pytestconfig, "--mpirun")


@pytest.fixture(scope="session")
def on_ranks(pytestconfig):
    """on_ranks(n): the mpirun prefix that runs a command on n ranks, the cores
    oversubscribed and the ranks not bound (tests share two cores)."""
    return lambda n: [option(pytestconfig, "--mpirun"), "--oversubscribe", "--bind-to", "none", "-n", str(n)]


@pytest.fixture(scope="session")
def smoe_run(smoe, on_ranks):
    """smoe_run(*args, ranks=0, **run_kwargs): runs smoe with `args` (under mpirun
    on `ranks` ranks when given) and asserts its exit status, as `run` does."""
    def go(*args, ranks=0, **kwargs):
        return run_program((on_ranks(ranks) if ranks else []) + [smoe, *args], **kwargs)
    return go


@pytest.fixture(scope="session")
def tool(pytestconfig):
    return os.path.abspath(option(pytestconfig, "--tool"))


@pytest.fixture(scope="session")
def family(pytestconfig):
    return option(pytestconfig, "--family")


@pytest.fixture(scope="session")
def workdir(pytestconfig):
    path = os.path.abspath(option(pytestconfig, "--workdir"))
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


@pytest.fixture(scope="session")
def run():
    """run(cmd, expect=0, env=None, timeout=600, **subprocess_kwargs): see programs.run_program."""
    return run_program
