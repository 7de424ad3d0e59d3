"""`baseline update|check`: a config's losses are stored once, and training is held to them:
identical in the same environment, within the measured tolerance in another one."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from {{ cookiecutter.package_name }} import baseline, train
from {{ cookiecutter.package_name }}.config import ModelConfig
from {{ cookiecutter.package_name }}.models import build_model as original
from {{ cookiecutter.package_name }}.train import load_training_config


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """baselines/ and outputs/ are relative to the working directory: a fresh one."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_passes_on_its_own_baseline_and_fails_on_another_initialisation(
    in_tmp: Path, smoke_config: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    assert baseline.main(["update", "--config", str(smoke_config)]) == 0
    stored = json.loads((in_tmp / "baselines" / "smoke.json").read_text(encoding="utf-8"))
    assert len(stored["losses"]) == 48  # 3 epochs of 16 steps
    assert len(stored["evaluations"]) == 3
    assert stored["environment"]["torch"] == str(torch.__version__)
    assert stored["environment"]["device"].startswith(("cpu", "cuda"))
    assert baseline.main(["check", "--config", str(smoke_config)]) == 0
    assert "48 steps and 3 evaluations identical to baselines/smoke.json" in capsys.readouterr().out

    # A code change that alters training but not the config: another initialisation.
    def build_model(config: ModelConfig, shape: tuple[int, int, int], classes: int) -> nn.Module:
        model = original(config, shape, classes)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.mul_(0.5)
        return model

    monkeypatch.setattr(train, "build_model", build_model)
    assert baseline.main(["check", "--config", str(smoke_config)]) == 1
    captured = capsys.readouterr()
    table = captured.out.split("the first differences:\n")[1].splitlines()
    assert table[0].split() == ["step", "value", "baseline", "now", "difference"]
    assert table[1].split()[:2] == ["1", "loss"]  # the first step already differs
    assert table[6].startswith("  ... and ")  # five rows, then how many more
    error = captured.err.strip()
    assert error.startswith("baseline failed: ")
    assert "\n" not in error
    assert "from step 1 on" in error
    assert f"baseline update --config {smoke_config}` and commit baselines/smoke.json" in error
    if importlib.util.find_spec("matplotlib") is None:  # the plots group is not installed
        assert "(no plot: matplotlib is not installed)" in error
        return
    [plot] = in_tmp.glob("outputs/smoke/*/baseline-check.png")
    assert f"(plot: {plot.relative_to(in_tmp)})" in error
    assert plot.read_bytes().startswith(b"\x89PNG")


def write_baseline(smoke_config: Path, **changes: Any) -> Path:
    """A baseline file of the smoke config, as `update` writes it (these losses are made up)."""
    config = load_training_config(smoke_config)
    values = {
        "format": baseline.FORMAT, "config_file": str(smoke_config),
        "config": baseline.compared_config(config),
        "environment": baseline.describe_environment(config),
        "losses": [2.3, 2.2], "evaluations": [{"step": 2, "val_loss": 2.1}], **changes,
    }  # fmt: skip
    path = baseline.baseline_path(smoke_config)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def test_bad_baselines_are_one_line_each_before_any_training(
    in_tmp: Path, smoke_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    update = f"`python -m {baseline.__package__}.baseline update --config {smoke_config}`"
    assert baseline.main(["check", "--config", str(smoke_config)]) == 2
    assert capsys.readouterr().err == (
        f"baseline: config error: no baseline baselines/smoke.json yet; make it with {update}, "
        "then commit baselines/smoke.json\n"
    )
    write_baseline(smoke_config)
    assert baseline.main(["check", "--config", str(smoke_config), "optim.lr=0.01"]) == 2
    assert capsys.readouterr().err == (
        "baseline: config error: baselines/smoke.json was made from another config (optim.lr "
        f"0.003 there, 0.01 here); if that change is intended, {update}, then commit "
        "baselines/smoke.json\n"
    )
    for damaged in ('{"format": 1, "losses": [', "[]"):
        (in_tmp / "baselines" / "smoke.json").write_text(damaged, encoding="utf-8")
        assert baseline.main(["check", "--config", str(smoke_config)]) == 2
        error = capsys.readouterr().err
        assert error.startswith("baseline: config error: baselines/smoke.json is damaged (")
        assert error.count("\n") == 1
    write_baseline(smoke_config, losses=["2.3"])
    assert baseline.main(["check", "--config", str(smoke_config)]) == 2
    assert "is damaged (not a baseline of format 1)" in capsys.readouterr().err
    assert not (in_tmp / "outputs").exists()  # refused before training


def measured(losses: list[float], val_loss: float) -> dict[str, Any]:
    return {"losses": losses, "evaluations": [{"step": len(losses), "val_loss": val_loss}]}


def test_the_same_environment_must_match_exactly_another_within_the_tolerance() -> None:
    stored = measured([2.3, 1.5, 0.7], 0.9)
    rounding = measured([2.3, 1.5 + 7e-7, 0.7 - 5e-7], 0.9 + 6e-7)  # as measured across CPUs
    assert [d.step for d in baseline.differences(stored, rounding, None)] == [2, 3, 3]
    assert baseline.differences(stored, rounding, baseline.TOLERANCE) == []
    reseeded = measured([2.3, 1.5, 0.7 + 0.26], 0.9 + 0.041)  # the smallest move of a new seed
    assert {
        (d.step, d.name) for d in baseline.differences(stored, reseeded, baseline.TOLERANCE)
    } == {(3, "loss"), (3, "val_loss")}
    shorter = baseline.differences(stored, measured([2.3, 1.5], 0.9), baseline.TOLERANCE)
    assert [(d.step, d.name) for d in shorter] == [(2, "val_loss"), (3, "loss"), (3, "val_loss")]
    assert math.isnan(shorter[1].now)  # the step this run never reached
