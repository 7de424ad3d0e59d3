"""After training: evaluate, predict with and export a checkpoint, as the README shows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image

from {{ cookiecutter.package_name }} import evaluate, export, predict
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.data import build_split
from {{ cookiecutter.package_name }}.data.mnist import read_idx
from {{ cookiecutter.package_name }}.inference import load_trained_model
from {{ cookiecutter.package_name }}.train import run

from helpers import read_metrics

if TYPE_CHECKING:
    from helpers import MakeTinyMnist, ReferenceRuns


@pytest.fixture(scope="module")
def trained(reference_run: ReferenceRuns) -> Path:
    """The session's smoke run evaluated every 5 steps (a best.pt from mid-epoch); its folder,
    only read by this module's tests."""
    return reference_run("train.eval_every=5")


def predictions(capsys: pytest.CaptureFixture[str], *arguments: str) -> list[dict[str, object]]:
    assert predict.main(list(arguments)) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_evaluating_best_pt_repeats_the_best_logged_evaluation(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = trained / "checkpoints" / "best.pt"
    output = tmp_path / "metrics" / "best.json"
    assert evaluate.main(["--checkpoint", str(best), "--output", str(output)]) == 0
    logged = [record for record in read_metrics(trained) if "val_loss" in record]
    best_logged = min(logged, key=lambda record: record["val_loss"])
    expected = {"val_loss": best_logged["val_loss"], "val_accuracy": best_logged["val_accuracy"]}
    assert json.loads(capsys.readouterr().out) == expected
    written = json.loads(output.read_text(encoding="utf-8"))
    assert written == {"checkpoint": str(best), "split": "val", **expected}


def test_mnist_evaluates_on_its_test_files_and_predicts_a_png_as_training_saw_it(
    smoke_config: Path,
    tmp_path: Path,
    make_tiny_mnist: MakeTinyMnist,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = make_tiny_mnist(tmp_path / "mnist")
    output_dir = tmp_path / "run"
    overrides = ["data.name=mnist", f"data.root={root}", "train.require_loss_decrease=false"]
    run(load_config(smoke_config, [f"output_dir={output_dir}", "train.epochs=2", *overrides]))
    best = output_dir / "checkpoints" / "best.pt"
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(best), "--split", "test"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"test_loss", "test_accuracy"}
    # A test image as a PNG file: predict must turn it into exactly the dataset's tensor.
    pixels = read_idx(root / "t10k-images-idx3-ubyte.gz")[0]
    Image.fromarray(pixels).save(tmp_path / "digit.png")
    (line,) = predictions(capsys, "--checkpoint", str(best), str(tmp_path / "digit.png"))
    trained_model = load_trained_model(best)
    image = build_split(trained_model.config.data, 0, "test")[0][0][None]  # the first, batched
    with torch.no_grad():
        probabilities = trained_model.model(image).softmax(dim=1)[0]
    assert line["class"] == int(probabilities.argmax())
    assert line["label"] == str(line["class"])
    assert line["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)
    # Moved data: the saved config's data.root is overridden on the command line.
    assert evaluate.main(["--checkpoint", str(best), "data.root=nowhere"]) == 1
    assert "download it with" in capsys.readouterr().err


def test_predict_names_every_image_of_arrays_and_files(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = trained / "checkpoints" / "best.pt"
    model = load_trained_model(best)
    val = build_split(model.config.data, model.config.seed, "val")
    samples = torch.stack([val[index][0] for index in range(3)])
    np.save(tmp_path / "samples.npy", samples.numpy())  # float: model inputs as they are
    pixels = torch.randint(0, 256, (2, 16, 16), dtype=torch.uint8)
    torch.save(pixels, tmp_path / "pixels.pt")  # uint8: pixels, preprocessed like images
    Image.fromarray(pixels[0].numpy()).save(tmp_path / "pixels.png")
    lines = predictions(
        capsys, "--checkpoint", str(best), str(tmp_path / "samples.npy"),
        str(tmp_path / "pixels.pt"), str(tmp_path / "pixels.png"),
    )  # fmt: skip
    names = [f"{tmp_path / 'samples.npy'}[{index}]" for index in range(3)]
    names += [f"{tmp_path / 'pixels.pt'}[0]", f"{tmp_path / 'pixels.pt'}[1]"]
    assert [line["input"] for line in lines] == [*names, str(tmp_path / "pixels.png")]
    with torch.no_grad():
        expected = model.model(samples).argmax(dim=1).tolist()
    assert [line["class"] for line in lines[:3]] == expected
    assert lines[3]["probability"] == lines[5]["probability"]  # the same pixels, two ways in


def write_bad_input(folder: Path, kind: str) -> Path:
    path = folder / {"not-an-image": "photo.png", "wrong-shape": "x.npy", "int64": "y.npy"}.get(
        kind, "absent.png"
    )
    if kind == "not-an-image":
        path.write_text("not a picture", encoding="utf-8")
    elif kind == "wrong-shape":
        np.save(path, np.zeros((3, 5, 5), dtype=np.float32))
    elif kind == "int64":
        np.save(path, np.zeros((16, 16), dtype=np.int64))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("not-an-image", "is not an image Pillow can read"),
        ("wrong-shape", "holds an array of shape (3, 5, 5); this model takes images of shape"),
        ("int64", "pass uint8 pixels (0-255) or float model inputs"),
    ],
)
def test_predict_refuses_bad_input_with_one_line_and_prints_nothing(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, message: str
) -> None:
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((16, 16), dtype=np.float32))
    bad = write_bad_input(tmp_path, kind)
    best = trained / "checkpoints" / "best.pt"
    assert predict.main(["--checkpoint", str(best), str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # the good input before it was not printed either
    assert captured.err.count("\n") == 1
    assert str(bad) in captured.err
    assert message in captured.err


@pytest.mark.parametrize("command", ["evaluate", "predict", "export"])
@pytest.mark.parametrize("damage", ["missing", "cut-short", "not-from-torch", "a-folder"])
def test_every_command_refuses_a_bad_checkpoint_with_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str, damage: str
) -> None:
    checkpoint = tmp_path / "checkpoints" / "best.pt"
    checkpoint.parent.mkdir()
    if damage == "cut-short":
        whole = (trained / "checkpoints" / "best.pt").read_bytes()
        checkpoint.write_bytes(whole[: len(whole) // 2])
    elif damage == "not-from-torch":  # no zip archive: torch reads it as a legacy pickle
        checkpoint.write_bytes(b"hello")
    elif damage == "a-folder":
        checkpoint = checkpoint.parent
    exported = tmp_path / "model.pt"
    if command == "evaluate":
        code = evaluate.main(["--checkpoint", str(checkpoint)])
    elif command == "predict":
        code = predict.main(["--checkpoint", str(checkpoint), str(tmp_path / "any.png")])
    else:
        arguments = ["--format", "weights", "--output", str(exported)]
        code = export.main(["--checkpoint", str(checkpoint), *arguments])
    assert code == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert f"checkpoint {checkpoint}" in error
    expected = {"missing": "does not exist", "a-folder": "is a folder"}.get(damage, "is damaged")
    assert expected in error
    assert not exported.exists()


def test_model_overrides_that_do_not_fit_the_weights_exit_2_with_one_line(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    best = trained / "checkpoints" / "best.pt"
    assert evaluate.main(["--checkpoint", str(best), "model.width=64"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "the weights do not fit model.name=cnn model.width=64" in error


def test_exported_program_runs_in_a_fresh_process_without_the_project(
    trained: Path, tmp_path: Path
) -> None:
    program = tmp_path / "model.pt2"
    best = trained / "checkpoints" / "best.pt"
    assert export.main(["--checkpoint", str(best), "--format", "exported-program",
                        "--output", str(program)]) == 0  # fmt: skip
    images = torch.randn(5, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.save(images, tmp_path / "images.pt")
    with torch.no_grad():
        torch.save(load_trained_model(best).model(images), tmp_path / "expected.pt")
    # The check blocks the project's import, so only PyTorch can run the program.
    check = textwrap.dedent(f"""
        import sys
        sys.modules["{{ cookiecutter.package_name }}"] = None
        import torch
        module = torch.export.load({str(program)!r}).module()
        images = torch.load({str(tmp_path / "images.pt")!r})
        expected = torch.load({str(tmp_path / "expected.pt")!r})
        print((module(images) - expected).abs().max().item())
    """)
    result = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) <= 1e-5


def test_weights_export_opens_with_weights_only_and_predicts_alike(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "model.pt"
    best = trained / "checkpoints" / "best.pt"
    assert export.main(["--checkpoint", str(best), "--format", "weights",
                        "--output", str(weights)]) == 0  # fmt: skip
    assert set(torch.load(weights, weights_only=True)) == {"model", "config", "preprocessing"}
    np.save(tmp_path / "x.npy", np.ones((2, 16, 16), dtype=np.float32))
    capsys.readouterr()
    from_best = predictions(capsys, "--checkpoint", str(best), str(tmp_path / "x.npy"))
    from_weights = predictions(capsys, "--checkpoint", str(weights), str(tmp_path / "x.npy"))
    assert from_weights == from_best


def test_onnx_export_matches_the_eager_model_in_onnx_runtime(trained: Path, tmp_path: Path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    model_file = tmp_path / "model.onnx"
    best = trained / "checkpoints" / "best.pt"
    assert export.main(["--checkpoint", str(best), "--format", "onnx",
                        "--output", str(model_file)]) == 0  # fmt: skip
    assert [path.name for path in tmp_path.iterdir()] == ["model.onnx"]  # one file, no side data
    images = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": images.numpy()})
    with torch.no_grad():
        expected = load_trained_model(best).model(images).numpy()
    assert np.abs(logits - expected).max() <= 1e-5


def test_an_export_that_fails_its_check_keeps_nothing(
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    best = trained / "checkpoints" / "best.pt"
    wrong_suffix = ["--checkpoint", str(best), "--format", "exported-program",
                    "--output", str(tmp_path / "model.onnx")]  # fmt: skip
    assert export.main(wrong_suffix) == 2
    assert "writes a .pt2 file" in capsys.readouterr().err
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no export can pass: the check must refuse
    output = tmp_path / "model.pt2"
    assert export.main(["--checkpoint", str(best), "--format", "exported-program",
                        "--output", str(output)]) == 1  # fmt: skip
    assert "nothing was written" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
