"""Every switch that makes a run repeatable, in one place.

DataLoader workers need nothing from here: PyTorch seeds each worker's `random`, NumPy and torch
from the loader's base seed and the worker id (torch/utils/data/_utils/worker.py).

What this promises: the same code, config, seed, device type, world size and library versions give
bitwise-identical losses run after run. What it cannot promise (PyTorch's reproducibility notes
say so too): identical results across PyTorch/CUDA/cuDNN versions, between CPU and GPU, or
between different GPU models, whose kernels round differently.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

# cuBLAS needs a fixed workspace to be deterministic on CUDA >= 10.2; it must be set before the
# first cuBLAS call, so `configure_determinism` runs before any model touches the GPU.
CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def configure_determinism(enabled: bool, compiling: bool = False) -> None:
    """Ask PyTorch for deterministic kernels; an op without one then raises instead of drifting."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    set_flag = getattr(torch._C, "_set_deterministic_algorithms", None)
    if compiling or set_flag is None:
        # The public call also puts Inductor (torch.compile) in deterministic mode.
        torch.use_deterministic_algorithms(enabled)
    else:
        # The same global switch without importing Inductor, which the public call does and
        # which costs over a second of start-up on a small CPU. tests/ check the switch flips.
        set_flag(enabled)
    # Deterministic mode also fills every new uninitialised tensor with NaN, a debugging aid whose
    # cost grows with tensor size (up to ~10% of a small CNN's step here); it changes no result of
    # a correct program, so it stays off.
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
    torch.backends.cudnn.deterministic = enabled
    # Benchmark mode picks the fastest kernel by timing, which can differ between runs.
    torch.backends.cudnn.benchmark = not enabled
