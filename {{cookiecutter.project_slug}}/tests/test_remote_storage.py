"""Run folders on S3, for real: a moto S3 server on 127.0.0.1 (what s3fs's own tests use), real
s3fs and botocore. A run killed on one machine resumes exactly on another with an empty cache;
evaluate, report, tag_run and sync read remote runs; a store that goes down mid-run loses
nothing; a search keeps its trials in a bucket and its killed trials go on from there; bad
locations stop with one line before anything is written."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import posixpath
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from {{ cookiecutter.package_name }} import (
    evaluate,
    remote_runs,
    report,
    search,
    storage,
    sweep,
    tag_run,
)
from {{ cookiecutter.package_name }}.config import load_config
from {{ cookiecutter.package_name }}.run_files import RunFiles
from {{ cookiecutter.package_name }}.search_worker import last_evaluation
from {{ cookiecutter.package_name }}.train import main as train
from {{ cookiecutter.package_name }}.train import run

from helpers import (
    NO_OPTUNA,
    SEARCH_SPACE,
    TINY_TRIAL,
    run_search,
    search_until_killed,
    step_losses,
)

# Its module-scoped fixtures are made once: every test of this module in one xdist worker.
pytestmark = pytest.mark.xdist_group("s3")

moto_server = pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")
fsspec = pytest.importorskip("fsspec")

PACKAGE = "{{ cookiecutter.package_name }}"
# Long enough to be killed mid-run after its first uploaded checkpoint (epoch 1 of 40), short
# enough for a test: 40 epochs of 8 steps, a few seconds on one thread.
RUN = ("data.num_train=512", "data.num_val=64", "train.epochs=40", "train.log_every=4")
LAYOUT = RunFiles(Path())
SECRET = "not-a-real-secret-key"


class S3Server:
    """moto's S3 server on a free loopback port; stop() and start() keep its buckets."""

    def __init__(self) -> None:
        self.port = 0
        self.server: Any = None

    def start(self) -> None:
        self.server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]

    def stop(self) -> None:
        self.server.stop()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """The store, and the variables every AWS library reads (no credentials in any file)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    server = S3Server()
    server.start()
    saved = dict(os.environ)
    os.environ.update(
        AWS_ENDPOINT_URL=server.endpoint, AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1",
    )  # fmt: skip
    yield server
    server.stop()
    os.environ.clear()
    os.environ.update(saved)


def store_view() -> Any:
    """The store as it is now: fresh listings and connections, with the botocore loader that
    storage.py shares (else each look parses S3's service description again, ~0.2 s of CPU, and
    the waits below look dozens of times)."""
    session = storage.protocol_options("s3")["session"]
    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, session=session)


def new_bucket(s3: S3Server) -> str:
    name = f"runs-{uuid.uuid4().hex[:8]}"
    store_view().mkdir(name)
    return name


def remote_files(url: str) -> dict[str, bytes]:
    """Every file below `url` (a run's write probe, there for an instant, left out)."""
    fs = store_view()
    root = url.removeprefix("s3://")
    found = {}
    for path in fs.find(root):
        with contextlib.suppress(FileNotFoundError):  # deleted between the listing and now
            found[path.removeprefix(root + "/")] = fs.cat_file(path)
    return found


def wait_for(condition: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def train_command(smoke_config: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", f"{PACKAGE}.train", "--config", str(smoke_config), *overrides]


@pytest.fixture(scope="module")
def killed_and_resumed(
    s3: S3Server, smoke_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path, Path]:
    """A run on S3 SIGKILLed after its first uploaded checkpoint on "machine A", resumed with
    resume=auto on "machine B" (another, empty cache); and the same run straight, locally."""
    scratch = tmp_path_factory.mktemp("remote")
    url = f"s3://{new_bucket(s3)}/smoke/run-1"
    machine_a = {**os.environ, "XDG_CACHE_HOME": str(scratch / "cache-a")}
    killed = subprocess.Popen(
        train_command(smoke_config, f"output_dir={url}", *RUN), env=machine_a,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    wait_for(lambda: LAYOUT.last.as_posix() in remote_files(url) or killed.poll() is not None)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert json.loads(remote_files(url)[LAYOUT.manifest.as_posix()])["status"] == "running"
    os.environ["XDG_CACHE_HOME"] = str(scratch / "cache-b")  # machine B: nothing cached
    try:
        run(load_config(smoke_config, [f"output_dir={url}", "resume=auto", *RUN]))
    finally:
        del os.environ["XDG_CACHE_HOME"]
    straight = scratch / "straight"
    run(load_config(smoke_config, [f"output_dir={straight}", *RUN]))
    return url, straight, scratch


def test_a_run_killed_on_one_machine_resumes_exactly_on_another(
    killed_and_resumed: tuple[str, Path, Path], tmp_path: Path
) -> None:
    url, straight, scratch = killed_and_resumed
    files = remote_files(url)
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    assert step_losses(tmp_path) == step_losses(straight)  # bitwise, as a local resume is
    manifest = json.loads(files[LAYOUT.manifest.as_posix()])
    assert manifest["status"] == "completed"
    assert manifest["output_uri"] == url
    assert manifest["resumed_from"]
    assert not any(SECRET.encode() in data for data in files.values())  # no credentials
    assert not storage.staging_folder(url).exists()  # uploaded, then the staging copy went
    assert not (scratch / "cache-b" / PACKAGE / "runs").exists() or not any(
        (scratch / "cache-b" / PACKAGE / "runs").iterdir()
    )


def test_evaluate_report_and_sync_read_a_remote_run(
    killed_and_resumed: tuple[str, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, straight, _ = killed_and_resumed
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    best = f"{url}/{LAYOUT.best.as_posix()}"
    assert evaluate.main(["--checkpoint", best]) == 0
    remote_metrics = json.loads(capsys.readouterr().out)
    local_metrics = evaluate.evaluate_checkpoint(RunFiles(straight).best, "val")
    assert remote_metrics == local_metrics

    assert report.main([url]) == 0
    assert "uploaded the report" in capsys.readouterr().out
    assert "report/report.md" in remote_files(url)

    manifest, _ = tag_run.read_run(url)
    assert f"run folder: {url}" in tag_run.tag_message(url, manifest, "0" * 12)
    assert sweep.status_of(url) == "completed"

    copy = tmp_path / "copy"
    assert storage.main(["sync", url, str(copy)]) == 0
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == sorted(
        remote_files(url)
    )
    capsys.readouterr()
    assert storage.main(["sync", url, str(copy)]) == 0  # again: nothing to copy
    assert "0 copied" in capsys.readouterr().out


def test_a_store_that_goes_down_mid_run_loses_nothing(
    s3: S3Server, smoke_config: Path, tmp_path: Path
) -> None:
    url = f"s3://{new_bucket(s3)}/run"
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = train_command(smoke_config, f"output_dir={url}", *RUN, "upload_wait_seconds=2")
    running = subprocess.Popen(
        command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    wait_for(lambda: LAYOUT.last.as_posix() in remote_files(url) or running.poll() is not None)
    s3.stop()  # mid-run: training goes on, the uploads wait and retry
    try:
        out, err = running.communicate(timeout=120)
    finally:
        s3.start()  # the same port, the same buckets
    assert running.returncode == 1, err
    assert f"uploads to {url} are failing" in out
    staging = storage.staging_folder(url).relative_to(Path.home() / ".cache").as_posix()
    (line,) = err.strip().splitlines()
    assert line.startswith("training failed: ")
    assert f"are not on {url} yet" in line
    staging_path = tmp_path / "cache" / staging
    assert f"{PACKAGE}.storage sync {staging_path} {url}`" in line
    assert RunFiles(staging_path).read_manifest()["status"] == "completed"  # trained to the end
    assert storage.main(["sync", str(staging_path), url]) == 0
    uploaded = remote_files(url)
    for path in staging_path.rglob("*"):
        if path.is_file():
            assert uploaded[path.relative_to(staging_path).as_posix()] == path.read_bytes()


class HeldStore(storage.Remote):
    """A local folder as the remote, whose uploads wait until `released` (or fail while `down`)
    and record what each one read: the order the Mirror uploads in, with a slow or a failing
    store, made deterministic."""

    def __init__(self, root: Path) -> None:
        super().__init__(root.as_uri(), fsspec.filesystem("file"), str(root))
        self.started, self.released, self.refused = (threading.Event() for _ in range(3))
        self.down = False
        self.uploads: list[tuple[str, bytes]] = []

    def upload(self, source: Path, relative: str) -> None:
        if self.down:
            self.refused.set()
            raise ConnectionRefusedError("the store is down")
        data = source.read_bytes()  # read when the upload starts, as a real one is
        self.started.set()
        assert self.released.wait(timeout=60), "never released"
        self.uploads.append((relative, data))
        self.filesystem.makedirs(posixpath.dirname(self.path(relative)), exist_ok=True)
        self.write(relative, data)


def published(mirror: storage.Mirror, path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(text)
    mirror.publish(path)


def test_the_uploads_keep_the_store_consistent_at_every_moment(tmp_path: Path) -> None:
    """Killed between two uploads, the store must hold a run that resumes: last.pt never ahead
    of the records it covers (metrics.jsonl published again keeps its place); any other file
    published again goes behind what was published before it (run.json here); and a file
    published again during its own upload goes up again (its last content is never lost)."""
    staging, store = tmp_path / "staging", HeldStore(tmp_path / "store")
    files, layout = RunFiles(staging), LAYOUT
    mirror = storage.Mirror(staging, store, print, growing=(layout.metrics.as_posix(),))
    published(mirror, files.config, "config\n")  # on its way, held: the store is slow
    assert store.started.wait(timeout=60)
    published(mirror, files.config, "config, written again\n")  # during its own upload
    published(mirror, files.manifest, "")
    published(mirror, files.metrics, "step 1-4\n")
    published(mirror, files.last, "checkpoint at step 4\n")
    published(mirror, files.manifest, "after the checkpoint\n")
    published(mirror, files.metrics, "step 5-8\n")  # the records go on after the checkpoint
    store.released.set()
    assert mirror.close(wait_seconds=60) == []
    order = [relative for relative, _ in store.uploads]
    uploaded = dict(store.uploads)  # the last upload of each
    assert order.index(layout.metrics.as_posix()) < order.index(layout.last.as_posix())
    assert order.index(layout.last.as_posix()) < order.index(layout.manifest.as_posix())
    assert uploaded[layout.metrics.as_posix()] == b"step 1-4\nstep 5-8\n"
    assert uploaded[layout.manifest.as_posix()] == b"after the checkpoint\n"
    assert uploaded[layout.config.as_posix()] == b"config\nconfig, written again\n"


def test_a_retry_after_an_outage_never_puts_a_newer_checkpoint_ahead_of_its_records(
    tmp_path: Path,
) -> None:
    """last.pt's upload fails while the store is down; meanwhile the run logs on and saves a
    newer last.pt. A retry would upload the newer one ahead of the records it covers: the
    queued entry goes up instead, after them."""
    staging, store = tmp_path / "staging", HeldStore(tmp_path / "store")
    files, layout = RunFiles(staging), LAYOUT
    store.released.set()
    store.down = True
    mirror = storage.Mirror(staging, store, print, growing=(layout.metrics.as_posix(),))
    published(mirror, files.last, "checkpoint at step 4\n")
    assert store.refused.wait(timeout=60)  # on its way, and failing
    published(mirror, files.metrics, "step 1-8\n")
    files.last.write_text("checkpoint at step 8\n", encoding="utf-8")  # saved anew
    mirror.publish(files.last)
    store.down = False
    assert mirror.close(wait_seconds=60) == []
    assert store.uploads == [
        (layout.metrics.as_posix(), b"step 1-8\n"),
        (layout.last.as_posix(), b"checkpoint at step 8\n"),
    ]


def test_a_sweep_into_a_bucket_keeps_its_runs_there_and_its_logs_here(
    s3: S3Server,
    smoke_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = f"s3://{new_bucket(s3)}/sweep"
    arguments = ["--config", str(smoke_config), "--seeds", "0,1", "--output-root", root]
    assert sweep.main([*arguments, "--slurm", "--dry-run"]) == 0
    script = capsys.readouterr().out
    assert f"output_dir={root}/seed-0" in script
    assert f"output_dir={root}/seed-1" in script
    assert f"#SBATCH --output={storage.local_side(root, 'sweep-logs')}/slurm-" in script


@pytest.mark.parametrize(
    ("location", "message", "code"),
    [
        ("output_dir=nosuch://bucket/run", "unknown protocol nosuch://", 2),
        (
            "output_dir=gs://bucket/run",
            "gs:// needs the gcsfs package; uv sync --locked --inexact --extra gcs",
            2,
        ),
        ("output_dir=s3://no-such-bucket-here/run", "create the bucket first", 2),
        ("output_dir=s3://key:secret@bucket/run", "credentials do not belong in a URL", 2),
        ("resume=s3://BUCKET/none/checkpoints/last.pt", "checkpoint s3://BUCKET/none/", 1),
    ],
)
def test_bad_remote_locations_are_one_line_and_write_nothing(
    s3: S3Server,
    smoke_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    location: str,
    message: str,
    code: int,
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    bucket = new_bucket(s3)
    location, message = location.replace("BUCKET", bucket), message.replace("BUCKET", bucket)
    assert train(["--config", str(smoke_config), location]) == code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message in line
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no outputs/, no cache


def test_missing_credentials_are_one_line(
    s3: S3Server,
    smoke_config: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"s3://{new_bucket(s3)}/run"
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert train(["--config", str(smoke_config), f"output_dir={url}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")


def test_each_remote_has_a_session_of_its_own_on_one_shared_loader(s3: S3Server) -> None:
    """Credentials are read for each remote as it is opened (the test above needs that), S3's
    service description once per process."""
    first = storage.open_remote(f"s3://{new_bucket(s3)}/run").filesystem
    second = storage.open_remote(f"s3://{new_bucket(s3)}/run").filesystem
    assert first.session is not second.session
    shared = storage.botocore_loader()
    assert first.session.get_component("data_loader") is shared
    assert second.session.get_component("data_loader") is shared


def records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def searched_in_a_bucket(
    s3: S3Server, smoke_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[list[str], str, Path, str]:
    """A 1-trial search with runs_root in a bucket, on a machine whose cache is its own: its
    trial SIGKILLed after its first uploaded checkpoint (a forked search, as test_search.py kills
    one), then the same command, which runs that trial again (as trial 1, in its folder). The
    command, the study's URL, the cache and what the second search printed. One trial: choosing
    the best of several is test_search.py's, and each trial on S3 costs seconds of CPU."""
    optuna = pytest.importorskip("optuna", reason=NO_OPTUNA)
    # Optuna's SQLite storage takes ~2 s of CPU to load the first time: loaded before the fork,
    # the killed search and the one after it do not each pay for it.
    optuna.storages.RDBStorage("sqlite:///:memory:")
    scratch = tmp_path_factory.mktemp("search")
    root = f"s3://{new_bucket(s3)}/runs"
    study = f"{root}/smoke/search/lr_width"
    arguments = ["--config", str(smoke_config), "--trials", "1", *SEARCH_SPACE, *TINY_TRIAL,
                 f"runs_root={root}"]  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(scratch / "cache"))
        # The third read of its stop request: the sync of step 8, after last.pt at step 4.
        process = multiprocessing.get_context("fork").Process(
            target=search_until_killed, args=(arguments, scratch, 3), daemon=True
        )
        process.start()
        killed = storage.open_remote(f"{study}/trial-0000")
        try:
            wait_for(lambda: killed.exists(LAYOUT.last.as_posix()) or not process.is_alive())
        finally:
            process.kill()
            process.join(timeout=60)
        assert process.exitcode == -signal.SIGKILL, "the search ended before it could be killed"
        assert any(storage.staging_folder(killed.url).iterdir())  # what the kill left behind
        printed = run_search(arguments)
    return arguments, study, scratch / "cache", printed


def test_a_search_into_a_bucket_keeps_its_trials_and_best_json_there(
    searched_in_a_bucket: tuple[list[str], str, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, study, cache, printed = searched_in_a_bucket
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    files = remote_files(study)
    assert {name.split("/", 1)[0] for name in files} == {"best.json", "trial-0000"}
    manifest = json.loads(files[f"trial-0000/{LAYOUT.manifest.as_posix()}"])
    assert manifest["status"] == "completed"
    assert manifest["output_uri"] == f"{study}/trial-0000"
    assert manifest["search"]["trial"] == 1  # trial 0's values again, in its folder
    assert f"trial-0000/{LAYOUT.last.as_posix()}" in files
    value = records(files[f"trial-0000/{LAYOUT.metrics.as_posix()}"])[-1]["val_loss"]
    assert last_evaluation(f"{study}/trial-0000", "val_loss") == value
    assert not storage.staging_folder(f"{study}/trial-0000").exists()  # uploaded, then removed
    best = json.loads(files["best.json"])
    assert (best["trial"], best["value"], best["trials"]) == (1, value, {"fail": 1, "complete": 1})
    assert best["run"] == f"{study}/trial-0000"
    assert not any(SECRET.encode() in data for data in files.values())  # no credentials
    # The study and the trials' console output stay on this machine, where the search says.
    here = storage.local_side(study, "searches")
    assert f"the study itself is on this machine, in {here / 'study.db'}" in printed
    assert "--storage URL" in printed
    assert f"run folder: {study}/trial-0000" in (here / "trial-0000" / "train.log").read_text()


def test_a_trial_killed_in_a_bucket_goes_on_from_its_checkpoint_there(
    searched_in_a_bucket: tuple[list[str], str, Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    optuna = pytest.importorskip("optuna", reason=NO_OPTUNA)
    _, study, cache, printed = searched_in_a_bucket
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    assert f"trial 0: its process died; it runs again from {study}/trial-0000" in printed
    manifest = json.loads(remote_files(study)[f"trial-0000/{LAYOUT.manifest.as_posix()}"])
    assert manifest["search"]["rerun_of"] == 0
    here = storage.local_side(study, "searches")
    log = (here / "trial-0000" / LAYOUT.train_log.name).read_text("utf-8")
    assert "at epoch 1, step 4" in log  # resumed from the last.pt in the bucket
    loaded = optuna.load_study(study_name="lr_width", storage=f"sqlite:///{here / 'study.db'}")
    assert [trial.state.name for trial in loaded.get_trials()] == ["FAIL", "COMPLETE"]


def test_a_search_in_a_bucket_run_again_trains_nothing_and_is_reported_there(
    searched_in_a_bucket: tuple[list[str], str, Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    arguments, study, cache, _ = searched_in_a_bucket
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    before = remote_files(study)
    printed = run_search(arguments)
    assert f"study lr_width in {study}: 1 of 1 trials finished" in printed
    assert remote_files(study) == before
    # The plots are test_search.py's: here the tables, read from the bucket and written back.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert report.main([study]) == 0
    assert f"uploaded the report to {study}/report" in capsys.readouterr().out
    text = remote_files(f"{study}/report")["report.md"].decode("utf-8")
    best = json.loads(before["best.json"])
    assert "## Search: study lr_width (val_loss, minimize)" in text
    assert f"Best: trial {best['trial']}, val_loss {best['value']:.4f}, optim.lr=" in text
    assert f"| {best['trial']} | {best['run'].rsplit('/', 1)[1]} | completed |" in text


def test_a_dead_trials_staging_copy_is_settled_before_it_runs_again(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed before its first checkpoint reached the store: a last.pt only here is uploaded
    (the trial goes on from it), files without one are dropped (the trial starts over)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = f"s3://{new_bucket(s3)}"

    def stage(name: str, *paths: Path) -> None:
        for path in paths:
            staged = storage.staging_folder(f"{root}/{name}") / path
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.write_bytes(b"{}")

    stage("only-here", LAYOUT.manifest, LAYOUT.last)
    stage("nothing", LAYOUT.manifest, LAYOUT.metrics)
    for name in ("only-here", "nothing"):
        remote_runs.settle_for_rerun(f"{root}/{name}")
    assert sorted(remote_files(root)) == ["only-here/checkpoints/last.pt", "only-here/run.json"]
    assert not storage.staging_folder(f"{root}/nothing").exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--slurm", "--dry-run", "runs_root=s3://BUCKET/runs"],
         "--slurm with runs_root=s3://BUCKET/runs: the array's workers"),
        (["runs_root=s3://no-such-bucket-here/runs"], "create the bucket first"),
    ],
)  # fmt: skip
def test_bad_search_into_a_bucket_is_one_line_and_writes_nothing(
    s3: S3Server, smoke_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], arguments: list[str], message: str,
) -> None:  # fmt: skip
    pytest.importorskip("optuna", reason=NO_OPTUNA)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    bucket = new_bucket(s3)
    arguments = [argument.replace("BUCKET", bucket) for argument in arguments]
    base = ["--config", str(smoke_config), "--trials", "2", *SEARCH_SPACE]
    assert search.main([*base, *arguments]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert message.replace("BUCKET", bucket) in line
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no outputs/, no cache
    assert remote_files(f"s3://{bucket}") == {}
