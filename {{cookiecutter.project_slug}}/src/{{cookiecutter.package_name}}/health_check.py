"""`python -m <package>.health_check [--require-cuda]`: can this machine train?

Prints torch and CUDA versions, whether the installed packages are the ones uv.lock pins, and
the visible devices, then runs a matmul and a model forward pass on the best device. Exits 0 on
a CPU-only machine (with a note) unless --require-cuda.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .errors import HealthCheckError, run_command
from .manifest import LOCK_FILE, describe_environment
from .models import SmallCNN


def device_lines() -> list[str]:
    if not torch.cuda.is_available():
        return ["devices: CPU only (no CUDA device visible)"]
    return [
        f"device cuda:{index}: {torch.cuda.get_device_name(index)}"
        for index in range(torch.cuda.device_count())
    ]


def lock_lines(environment: dict[str, Any]) -> list[str]:
    """Whether the packages a run needs are the versions uv.lock pins (manifest.py compares)."""
    if environment["lock_sha256"] is None:
        return [f"{LOCK_FILE}: none here, so the installed packages are not checked against it"]
    lock = f"{LOCK_FILE} (sha256 {environment['lock_sha256'][:12]})"
    differences = environment["lock_differences"]
    if differences is None:
        return [f"{lock}: not compared, which needs Python 3.11 or newer"]
    if not differences:
        return [f"packages: as {lock} pins them; torch comes with this machine or image"]
    return [
        f"packages differ from {lock}:",
        *(f"  {line}" for line in differences),
        "  Fix: bash scripts/setup_dev.sh (or uv sync --locked --inexact), or rebuild the image",
    ]


def exercise(device: torch.device) -> None:
    """A matmul and a forward pass: fails loudly if kernels or drivers are broken."""
    matrix = torch.randn(256, 256, device=device)
    product = matrix @ matrix
    model = SmallCNN(in_channels=1, num_classes=10, width=8).to(device)
    logits = model(torch.randn(4, 1, 16, 16, device=device))
    if not (torch.isfinite(product).all() and logits.shape == (4, 10)):
        raise HealthCheckError("wrong results from a matmul or a forward pass")
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check that this machine can train.")
    parser.add_argument("--require-cuda", action="store_true", help="fail without a CUDA device")
    arguments = parser.parse_args(argv)
    return run_command("health check", lambda: check(require_cuda=arguments.require_cuda))


def check(require_cuda: bool) -> None:
    environment = describe_environment()
    print(f"torch {environment['torch']}, CUDA {environment['cuda']}, cuDNN {environment['cudnn']}")
    for line in [*lock_lines(environment), *device_lines()]:
        print(line)
    if require_cuda and not torch.cuda.is_available():
        raise HealthCheckError(
            "--require-cuda but no CUDA device is visible; check the driver (nvidia-smi) and "
            "run containers with --gpus all"
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        exercise(device)
    except RuntimeError as error:  # a broken kernel or driver, in torch's own words
        raise HealthCheckError(f"on {device}: {error}") from None
    note = "" if device.type == "cuda" else " (CPU only: fine for tests and smoke runs)"
    print(f"health check passed on {device}{note}")


if __name__ == "__main__":
    sys.exit(main())
