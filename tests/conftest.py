"""Suite-wide set-up: under pytest-xdist, each of the 2 workers gets 1 intra-op thread.

The machine has 2 cores. Two workers with 2 threads each oversubscribe them (OpenMP threads
spin-wait for each other), so every worker and every subprocess it starts uses one thread.
"""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
