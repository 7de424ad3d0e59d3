"""torchrun with 2 CPU processes (gloo) must reproduce one process with the same global batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.run_log import read_metrics
from {{ cookiecutter.package_name }}.train import run

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def step_losses(output_dir: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(output_dir / "metrics.jsonl") if "loss" in r]


@pytest.mark.slow
def test_two_ranks_match_one_rank(smoke_config: Path, tmp_path: Path) -> None:
    single, double = tmp_path / "one-rank", tmp_path / "two-ranks"
    run(load_config(smoke_config, [f"output_dir={single}", "train.device=cpu"]))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "{{ cookiecutter.package_name }}.train", "--config", str(smoke_config),
         f"output_dir={double}", "train.device=cpu"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 x cpu" in result.stdout
    one, two = step_losses(single), step_losses(double)
    assert len(one) == len(two) > 0
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) <= 1e-6


def test_a_global_batch_that_does_not_split_is_a_config_error(smoke_config: Path) -> None:
    from {{ cookiecutter.package_name }}.config import ConfigError
    from {{ cookiecutter.package_name }}.data.loaders import per_rank_batch_size
    from {{ cookiecutter.package_name }}.distributed import DistributedContext

    config = load_config(smoke_config, ["train.batch_size=63"])
    with pytest.raises(ConfigError, match="multiple of 2"):
        per_rank_batch_size(config, DistributedContext(rank=0, local_rank=0, world_size=2))
