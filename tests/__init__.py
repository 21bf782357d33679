"""The test suite. `make test` runs it in two pytest-xdist workers on two cores, one thread each: the small
models of the tests use the cores better that way. Set before anything imports torch, the variable also reaches
every process a test starts, so that all of them compute alike."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
