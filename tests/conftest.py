"""Suite-wide set-up for ``make test``, which runs pytest-xdist with one worker per core.

- Each worker gets 1 intra-op thread (and so does every subprocess it starts): two workers with
  2 OpenMP threads each oversubscribe a 2-core machine, and OpenMP threads spin-wait for each other.
- ``--dist loadfile`` keeps each test file on one worker, in order: the tutorial pages of a file
  share one work folder and build on each other (tutorial 2 uses tutorial 1's model). (``loadgroup`` would
  be finer, but pytest-xdist 3.8 cannot tag node ids under pytest 9.2, so its groups are ignored.)
- the tutorial files, then other ``slow`` tests, are scheduled first: the longest jobs start while the
  short ones fill the gaps (with ``loadfile`` a worker takes a whole file; the tutorials are four files).
"""

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tutorial files first (the longest units: 3-5 minutes each), then other ``slow`` tests, then the rest."""

    def rank(item: pytest.Item) -> int:
        if item.nodeid.startswith("tests/docs/test_tutorials"):
            return 0
        return 1 if item.get_closest_marker("slow") is not None else 2

    items.sort(key=rank)  # stable: page order is kept
