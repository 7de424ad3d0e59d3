from __future__ import annotations

from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.train import load_training_config


def test_defaults_need_no_file() -> None:
    config = load_config()
    assert config.train.epochs >= 1
    assert config.data.name == "{{ cookiecutter.dataset }}"


def test_overrides_are_typed(smoke_config: Path) -> None:
    config = load_config(smoke_config, ["optim.lr=1e-3", "train.epochs=7", "train.amp=bf16"])
    assert config.optim.lr == pytest.approx(0.001)
    assert config.train.epochs == 7
    assert config.train.amp == "bf16"


def test_off_stays_a_word_on_the_command_line_and_in_files(tmp_path: Path) -> None:
    # YAML 1.1 would read `off` as False, which no `train.amp` choice matches.
    assert load_config(None, ["train.amp=off"]).train.amp == "off"
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train:\n  amp: off\n  compile: false\n", encoding="utf-8")
    config = load_config(config_file, ["train.deterministic=False"])
    assert config.train.amp == "off"
    assert config.train.compile is config.train.deterministic is False


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown key train.epoch"),
        ("train.epochs=three", "train.epochs='three' should be of type int"),
        ("train.epochs=true", "should be of type int"),
        ("train.compile=yes", "train.compile='yes' should be of type bool"),
        ("train.epochs=0", "train.epochs=0 must be at least 1"),
        ("optim.lr=-1", "must be positive"),
        ("model.name=resnet", "choose one of ['cnn', 'mlp']"),
        ("data.name=imagenet", "is not a registered dataset"),
        ("train.grad_accum_steps=0", "train.grad_accum_steps=0 must be at least 1"),
        ("optim.warmup_steps=-5", "optim.warmup_steps=-5 must be 0 or more"),
        ("train.max_steps=-1", "train.max_steps=-1 must be 0 or more"),
        ("train.eval_every=-1", "train.eval_every=-1 must be 0 or more"),
        ("train.checkpoint_every=-2", "train.checkpoint_every=-2 must be 0 or more"),
        ("train.early_stop_patience=-1", "train.early_stop_patience=-1 must be 0 or more"),
        ("train.early_stop_min_delta=-0.1", "train.early_stop_min_delta=-0.1 must be 0 or more"),
        ("train.time_limit_minutes=-1", "train.time_limit_minutes=-1.0 must be 0 or more"),
        ("train.cpu_threads=-1", "train.cpu_threads=-1 must be 0 or more"),
        ("train.max_steps=1.5", "train.max_steps=1.5 should be of type int"),
        ("train=3", "train must be a section"),
        ("seed", "is not key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    """As the commands load a config: the registries check the names of data and model."""
    with pytest.raises(ConfigError) as error:
        load_training_config(None, [override])
    assert message in str(error.value)


def test_missing_file_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
