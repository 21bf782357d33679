"""Bad arguments to every command: exit code 2, one line on stderr naming the problem (and flags as they are
typed), and nothing written; plus the checks behind those lines (run artefacts, output paths, encode's input,
the frozen model `load_model` returns)."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.main import get_command

from tests.conftest import DDPM, tiny_config
from vaelab.cli import app, main
from vaelab.config import parse_duration
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import trained_parameters
from vaelab.io import atomic_write_text
from vaelab.models.registry import build_model
from vaelab.rundir import EVAL, FACTORS, GENERATION, load_model, read_artefact
from vaelab.training import train

CHECKS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, Path]:
    """Real tiny runs (one epoch on 512 MNIST images: a vae and a vae-classifier) and the wrong things a user may
    name instead of a path: a missing path, a file, an empty folder, a run whose config.json is damaged, a folder
    named like a PNG."""
    root = tmp_path_factory.mktemp("bad-arguments")
    run, classifier = root / "run", root / "classifier"
    for kind, folder in (("vae", run), ("vae-classifier", classifier)):
        train(tiny_config(family=kind, train_limit=512, val_limit=256, epochs=1), folder, progress=False,
              log=lambda message: None)
    (root / "file").write_text("not a folder\n")
    (root / "empty").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "config.json").write_text('{"data": ')
    (root / "folder.png").mkdir()  # a folder named like an output file
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(root / "digit.png")
    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(root / "photo.jpg")  # a picture, but not a PNG
    return {"run": run, "classifier": classifier, "file": root / "file", "empty": root / "empty",
            "broken": root / "broken", "missing": root / "missing", "pngdir": root / "folder.png",
            "png": root / "digit.png", "jpg": root / "photo.jpg", "tmp": root}


def digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder`, by relative path (a new file or folder shows up too)."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
            for path in sorted(folder.rglob("*"))}


def run_cli(capsys, args: list[str]) -> tuple[int, str, str]:
    """The `vaelab` entry point in-process: exit code, stdout, stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(args)
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


def options_of(command: list[str]) -> set[str]:
    """Every flag of `vaelab COMMAND` (or `vaelab data fetch`), as declared, and --help."""
    click_command = get_command(app)
    for name in command:
        click_command = click_command.commands[name]
    return {"--help"} | {flag for param in click_command.params for flag in (*param.opts, *param.secondary_opts)
                         if flag.startswith("-")}


FLAG = re.compile(r"(?<![\w.-])(--?[a-z][a-z-]*)")


def assert_refused_in_one_line(capsys, places, args: list[str], invented_flag: str | None = None) -> str:
    """`vaelab ARGS` exits with 2 and one `error:` line naming only flags the command has (outside the commands
    it quotes in backticks), and leaves every file where it was."""
    args = [arg.format(**{key: str(path) for key, path in places.items()}) for arg in args]
    before = digest(places["tmp"])
    code, out, err = run_cli(capsys, args)
    assert code == 2, f"{args}: exit {code}, {err!r}"
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("error: "), f"{args}: {err!r}"
    assert "Traceback" not in err and out == "", f"{args}: {out!r}"
    command = args[:2] if args[0] == "data" else args[:1]
    named = set(FLAG.findall(re.sub(r"`[^`]*`", "", err))) - {invented_flag}
    assert named <= options_of(command), f"{args}: {err!r} names {named - options_of(command)}"
    assert digest(places["tmp"]) == before, f"{args} changed files"
    return err


# What each command needs besides the bad part, with the real run.
REQUIRED = {
    "eval": ["{run}"], "classify": ["{run}", "{png}"], "generation": ["{run}"], "sample": ["{run}"],
    "restyle": ["{run}", "--from", "test:0"], "reconstruct": ["{run}"], "traverse": ["{run}"],
    "interpolate": ["{run}", "--from", "test:0", "--to", "test:1"], "factors": ["{run}", "--no-classify"],
    "embed": ["{run}"], "compare": ["{run}", "{run}"], "report": ["{run}"], "explore": ["{run}"],
    "sweep": ["--beta", "1", "--epochs", "1", "--out", "{tmp}/sweep"], "classifier": ["mnist"],
    "train": ["--out", "{tmp}/new", "--epochs", "1"],
}
RUN_COMMANDS = [name for name, args in REQUIRED.items() if args[0] == "{run}"]
# The count options of each command: any value below 1, above its limit or not a whole number is refused.
COUNTS = {
    "eval": ["--iw-images", "--test-limit", "--generation-samples", "--class-samples", "--probe-images"],
    "generation": ["-n", "--samples", "--inception-samples", "--reference-images", "--components"],
    "sample": ["-n", "--scale", "--components", "--columns"],
    "restyle": ["--scale"], "reconstruct": ["-n", "--scale"], "traverse": ["--scale"], "interpolate": ["--scale"],
    "embed": ["--limit"], "factors": ["--metric-images"],
    "compare": ["-n", "--samples", "--inception-samples", "--reference-images", "--iw-samples", "--iw-images"],
    "sweep": ["--samples", "--iw-samples", "--iw-images", "--factor-bases", "--metric-images", "--train-limit",
              "--val-limit"],
}
BAD_COUNT = st.one_of(st.integers(max_value=0), st.integers(min_value=10**7, max_value=2**62),
                      st.sampled_from(["x", "1.5", "", "1e3", "nan", "-"]))
# Output options and the ending their file needs ("" for a folder).
OUTPUTS = {
    "sample": ("--out", ".png"), "restyle": ("--out", ".png"), "reconstruct": ("--out", ".png"),
    "traverse": ("--out", ".png"), "interpolate": ("--out", ".png"), "embed": ("--out", ".png"),
    "factors": ("--out", ".json"), "report": ("--out", ".html"), "compare": ("--out", ""), "sweep": ("--out", ""),
}


@CHECKS
@given(command=st.sampled_from(RUN_COMMANDS), run=st.sampled_from(["{missing}", "{file}", "{empty}", "{broken}"]))
def test_a_run_directory_that_is_not_one_is_refused_in_one_line(capsys, places, command, run):
    assert_refused_in_one_line(capsys, places, [command, run, *REQUIRED[command][1:]])


@CHECKS
@given(data=st.data(), value=BAD_COUNT)
def test_a_count_out_of_range_is_refused_in_one_line_naming_its_flag(capsys, places, data, value):
    command = data.draw(st.sampled_from(sorted(COUNTS)))
    flag = data.draw(st.sampled_from(COUNTS[command]))
    assert_refused_in_one_line(capsys, places, [command, *REQUIRED[command], flag, str(value)])


@CHECKS
@given(data=st.data())
def test_an_output_that_cannot_be_written_is_refused_before_any_work(capsys, places, data):
    command = data.draw(st.sampled_from(sorted(OUTPUTS)))
    flag, suffix = OUTPUTS[command]
    bad = ["{file}/out" + suffix, "/proc/vaelab/out" + suffix, "{pngdir}" if suffix else "{file}"]
    assert_refused_in_one_line(capsys, places, [command, *without_out(REQUIRED[command]), flag,
                                                data.draw(st.sampled_from(bad))])


def without_out(args: list[str]) -> list[str]:
    """`args` less any `--out PATH`."""
    return [arg for i, arg in enumerate(args) if arg != "--out" and (i == 0 or args[i - 1] != "--out")]


UNKNOWN_NAME = st.from_regex(r"[a-z][a-z0-9_-]{0,9}", fullmatch=True).filter(
    lambda name: name not in ("mnist", "fashion-mnist", "emoji", "celeba"))


@CHECKS
@given(name=UNKNOWN_NAME, where=st.sampled_from(["reference-classifier", "data fetch", "sweep", "train"]))
def test_an_unknown_dataset_is_refused_in_one_line(capsys, places, name, where):
    args = {"reference-classifier": ["reference-classifier", name], "data fetch": ["data", "fetch", name],
            "sweep": ["sweep", *REQUIRED["sweep"], "--dataset", name],
            "train": ["train", *REQUIRED["train"], "--dataset", name]}[where]
    assert "unknown dataset" in assert_refused_in_one_line(capsys, places, args)


@CHECKS
@given(command=st.sampled_from(sorted(REQUIRED)), flag=st.from_regex(r"--[a-z][a-z-]{1,12}", fullmatch=True))
def test_an_invented_flag_is_refused_in_one_line(capsys, places, command, flag):
    if flag in options_of([command]):
        return
    err = assert_refused_in_one_line(capsys, places, [command, *REQUIRED[command], flag], invented_flag=flag)
    assert f"see `vaelab {command} --help`" in err


@pytest.mark.parametrize("command", sorted(OUTPUTS))
def test_an_option_without_its_value_is_refused_in_one_line(capsys, places, command):
    err = assert_refused_in_one_line(capsys, places, [command, *without_out(REQUIRED[command]), "--out"])
    assert "'--out' requires an argument" in err


@pytest.mark.parametrize(("args", "message"), [
    (["sample", "{run}", "-n", "0"], "error: -n must be between 1 and 10,000 (got 0)"),
    (["generation", "{run}", "-n", "-3"], "error: -n/--samples must be between 1 and 1,000,000 (got -3)"),
    (["sample", "{run}", "-n", "many"], "error: Invalid value for '-n'"),
    (["explore", "{run}", "--port", "70000"], "error: --port must be from 0 to 65535 (got 70000)"),
    (["sample", "{file}"], "is a file, not a run directory"),
    (["classify", "{classifier}", "{empty}"], "image {empty} is a directory, not an image file"),
    (["classify", "{classifier}", "{missing}"], "image {missing} does not exist"),
    (["report", "{run}", "--out", "{file}/report.html"], "cannot write {file}/report.html: {file} is a file, not a"),
    (["sample", "{run}", "--out", "/proc/vaelab/s.png"], "cannot write /proc/vaelab/s.png: /proc does not accept"),
    (["embed", "{run}", "--out", "{pngdir}"], "output {pngdir} is a directory"),
    (["compare", "{run}", "{run}", "--out", "{file}"], "output folder {file} is a file"),
    (["train", "--out", "{tmp}/new", "--nproc", "0"], "--nproc must be ≥ 1, not 0"),
    # what a new user gets wrong first: a picture for the config, a size for a dataset that has one, a dataset
    # name as spelled elsewhere or a folder without its prefix, an image file for an interpolation's end
    (["train", "--config", "{png}", "--out", "{tmp}/new"], "error: {png} is not a YAML config file (binary data, "
     "not text: byte 0x89 at offset 0); give a .yaml file such as configs/mnist.yaml"),
    (["sweep", *REQUIRED["sweep"], "--config", "{png}"], "{png} is not a YAML config file"),
    (["train", "--config", "{empty}", "--out", "{tmp}/new"], "config {empty} is a folder, not a YAML config file"),
    (["train", "--config", "{file}", "--out", "{tmp}/new"], "{file} is not a YAML config file (it holds plain text, "
     "not the sections data/model/train)"),
    (["train", "--dataset", "mnist", "--image-size", "64", "--out", "{tmp}/new"],
     "error: mnist images are 1×28×28 and are not resized; leave out --image-size\n"),
    (["train", "--dataset", "fashion-mnist", "--image-channels", "3", "--out", "{tmp}/new"],
     "fashion-mnist images are 1×28×28 and are not resized; leave out --image-channels\n"),
    (["train", "--dataset", "MNIST", "--out", "{tmp}/new"], "unknown dataset 'MNIST' (did you mean mnist?)"),
    (["train", "--dataset", "fashion_mnist", "--out", "{tmp}/new"], "(did you mean fashion-mnist?)"),
    (["train", "--dataset", "{empty}", "--out", "{tmp}/new"], "(for the images in that folder, write folder:{empty})"),
    (["train", "--dataset", "folder:", "--out", "{tmp}/new"], "folder: needs the path of a folder of images after it"),
    (["train", "--dataset", "folder:{missing}", "--out", "{tmp}/new"], "{missing} is not a folder; pass folder:PATH"),
    (["train", "--dataset", "folder:{file}", "--out", "{tmp}/new"], "{file} is not a folder; pass folder:PATH"),
    (["train", "--dataset", "folder:{empty}", "--out", "{tmp}/new"], "{empty} holds no PNG, JPEG or WebP files"),
    (["train", "--time-budget", "5 fortnights", "--out", "{tmp}/new"], "time_budget must be a duration such as 90s"),
    (["train", "--time-budget", "5", "minutes", "--out", "{tmp}/new"], "error: Got unexpected extra argument(s) "
     "(minutes); if '5 minutes' is the value of --time-budget, quote it: --time-budget '5 minutes' (see `vaelab"),
    (["sample", "{run}", "10"], "error: Got unexpected extra argument(s) (10) (see `vaelab sample --help`)"),
    (["interpolate", "{run}", "--from", "image.png", "--to", "test:1"], "error: --from 'image.png' is not valid; "
     "write test:INDEX (INDEX a test image number from 0 to 9999) or random:SEED (a code drawn from the prior"),
    (["interpolate", "{run}", "--from", "test:0", "--to", "random:x"],
     "--to 'random:x' is not valid; write random:SEED"),
    (["traverse", "{run}", "--base", "test:x"],
     "base 'test:x' is not valid; write test:INDEX (INDEX a test image number from 0 to 9999) or prior"),
    (["explore", "{run}", "--host", "999.1.1.1"], "error: cannot listen on 999.1.1.1: not a valid address of this "
     "machine (Name or service not known); use --host 127.0.0.1"),
    (["eval", "{run}", "--device", "gpu"], "unknown --device 'gpu'; use auto, cpu or cuda"),
    (["classify", "{classifier}", "{jpg}"], "{jpg} is not a readable PNG image (it is a JPEG image); save it as a PNG"),
    (["report", "{run}", "--out", "{tmp}/report.pdf"], "output {tmp}/report.pdf must end in .html"),
    (["train", "--out", "{tmp}/new", "--latent-dim", "8.5"], "--latent-dim must be a whole number (got '8.5')"),
])
def test_each_mistake_gets_a_message_that_names_it(capsys, places, args, message):
    err = assert_refused_in_one_line(capsys, places, args)
    assert message.format(**{key: str(path) for key, path in places.items()}) in err


@pytest.mark.parametrize(("content", "problem"), [
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "is not a YAML config file (binary data, not text: byte 0x89 at offset 0)"),
    (b"PK\x03\x04\x00\x00", "is not a YAML config file (binary data, not text: a NUL byte at offset 4)"),
    (b"- mnist\n- 30\n", "is not a YAML config file (it holds a list, not the sections data/model/train)"),
    (b"train mnist for 30 epochs\n", "is not a YAML config file (it holds plain text, not the sections"),
    (b"data:\n  dataset: mnist\n model: x: y\n", "is not valid YAML (expected <block end>, but found "
                                                  "'<block mapping start>' at line 3, column 2); correct it, or"),
])
def test_a_config_that_is_not_a_yaml_config_is_one_line_naming_it_and_the_fix(capsys, tmp_path, content, problem):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    code, out, err = run_cli(capsys, ["train", "--config", str(config), "--out", str(tmp_path / "new")])
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: {config} {problem}")
    assert err.endswith("give a .yaml file such as configs/mnist.yaml\n")
    assert not (tmp_path / "new").exists()


def test_explore_tells_a_bad_address_from_a_busy_port(capsys, places):
    err = assert_refused_in_one_line(capsys, places, ["explore", "{run}", "--host", "999.1.1.1"])
    assert "--port" not in err and "port 8000" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        err = assert_refused_in_one_line(capsys, places, ["explore", "{run}", "--port", str(port)])
    assert err.startswith(f"error: cannot listen on 127.0.0.1 port {port}: the port is in use")
    assert "choose another --port, or --port 0 for any free one" in err and "--host" not in err


def test_durations_are_read_as_people_write_them():
    assert parse_duration("5min") == parse_duration("5 minutes") == parse_duration("5m") == 300
    assert parse_duration("1 hour 30 mins") == parse_duration("1h30m") == 5400 and parse_duration("90 sec") == 90
    for bad in ("5ms", "5 fortnights", "minutes", "5 mins later"):
        with pytest.raises(VaelabError, match="must be a duration such as 90s, 8m or 1h30m"):
            parse_duration(bad, "time_budget")


def test_a_bare_vaelab_prints_the_help_and_version_still_answers(capsys):
    code, out, _ = run_cli(capsys, [])
    assert code == 2 and "Commands" in out
    code, out, err = run_cli(capsys, ["--version"])
    assert code == 0 and out.startswith("vaelab ") and err == ""


# --- run artefacts ----------------------------------------------------------------------------------------------

DAMAGED = [
    ('{"elbo": -90.1,\n  "kl": ', "is not valid JSON (Expecting value at line 2, column 9)"),
    (b"\xff\xfe{}", "is not valid JSON (not UTF-8 text)"),
    ("[]", "(a list instead of an object)"),
    ('{"dataset": "mnist", "split": "test", "images": 10}', "has no 'input_mode', 'elbo', 'recon'"),
    ("null", "(null instead of an object)"),
]


@pytest.mark.parametrize(("content", "problem"), DAMAGED)
def test_a_damaged_eval_json_is_one_line_naming_the_file_and_the_fix(places, tmp_path, content, problem):
    run = tmp_path / "run"
    shutil.copytree(places["run"], run)
    path = run / EVAL
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(VaelabError) as refused:
        read_artefact(run, EVAL)
    assert str(refused.value).startswith(f"{path} ") and problem in str(refused.value)
    assert str(refused.value).endswith(f"delete it and run `vaelab eval {run}` again")


@pytest.mark.parametrize(("name", "content", "problem"), [
    (FACTORS, "{}", "an object instead of a list of rows"),
    (FACTORS, '[{"dim": 0, "kl": 1.0, "active": true, "name": "slant"}, 3]', "row 1 is a number instead of an object"),
    (FACTORS, '[{"dim": 0}]', "row 0 has no 'kl', 'active', 'name'"),
    (GENERATION, '{"dataset": "mnist"}', "has no 'real', 'classifier_test_accuracy', 'samplers'"),
])
def test_a_factor_table_or_generation_json_of_the_wrong_form_is_refused(tmp_path, name, content, problem):
    (tmp_path / name).write_text(content)
    command = {FACTORS: "vaelab factors", GENERATION: "vaelab generation"}[name]
    with pytest.raises(VaelabError, match=re.escape(problem)) as refused:
        read_artefact(tmp_path, name)
    assert f"delete it and run `{command} {tmp_path}` again" in str(refused.value)


def test_report_on_a_run_with_a_foreign_eval_json_is_one_line_and_writes_nothing(capsys, places, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(places["run"], run)
    (run / EVAL).write_text("[]")
    before = digest(run)
    code, _, err = run_cli(capsys, ["report", str(run), "--out", str(tmp_path / "r.html")])
    *progress, last = err.splitlines()  # the report logs each section it starts on stderr
    assert code == 2 and "Traceback" not in err and not any(line.startswith("error") for line in progress)
    assert last.startswith(f"error: {run / EVAL} is not what `vaelab eval {run}` writes (a list instead of an object)")
    assert digest(run) == before and not (tmp_path / "r.html").exists()


def test_an_atomic_write_under_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaelabError, match="could not write .*; nothing was written"):
        atomic_write_text(tmp_path / "file" / "out.txt", "text")


# --- the model's Python API ------------------------------------------------------------------------------------


def test_load_model_returns_a_frozen_model_in_eval_mode_whose_outputs_carry_no_graph(places):
    model = load_model(places["run"])
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    mu, logvar = model.encode(torch.rand(2, 1, 28, 28))
    images = model.decode(mu)
    assert not (mu.requires_grad or logvar.requires_grad or images.requires_grad) and images.grad_fn is None


def test_trained_parameters_still_counts_what_the_optimizers_train_on_a_frozen_model(places):
    config = tiny_config(train_limit=512, val_limit=256, epochs=1)
    assert trained_parameters(load_model(places["run"])) == sum(p.numel() for p in build_model(config.model)
                                                                .parameters())
    ddpm = build_model(tiny_config(**DDPM).model)
    expected = sum(p.numel() for p in ddpm.net.parameters())  # the U-Net, not its EMA copy
    assert trained_parameters(ddpm.requires_grad_(False)) == expected


@pytest.mark.parametrize("kind", ["vae", "cvae", "vae-classifier", "m2"])
@pytest.mark.parametrize(("images", "message"), [
    (torch.rand(3, 28, 28), "encode expects images of shape [N, 1, 28, 28] (the run's dataset), got [3, 28, 28]"),
    (torch.rand(2, 3, 28, 28), "got [2, 3, 28, 28]"),
    (torch.rand(2, 1, 32, 32), "got [2, 1, 32, 32]"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "encode expects a float tensor of intensities in [0, 1]"),
])
def test_encode_refuses_images_of_another_shape_naming_the_expected_one(kind, images, message):
    model = build_model(tiny_config(family=kind).model)
    with pytest.raises(VaelabError) as refused:
        model.encode(images, torch.zeros(len(images), dtype=torch.long))
    assert message in str(refused.value) and "\n" not in str(refused.value)
