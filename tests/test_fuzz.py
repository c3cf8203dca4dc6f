"""Fuzzing the boundary: Hypothesis builds command lines for every command from options that
fail fast, and file contents for every kind of file a command reads, and asserts the contract:

- exit 0 or 2 (1 only where documented: a study with failed runs), never an internal error;
- a refusal is at most one line on stderr and never a traceback;
- no file is created or changed, since every case stops at the work: the first step of each
  command's real work is replaced by a sentinel, so reaching it means "the boundary let this in"
  and the case ends there (cheap, and what is fuzzed is the boundary, not training).

``make test`` runs the ``ci`` profile (a bounded number of examples per test); ``make fuzz`` runs
the ``deep`` profile with ``FUZZ_EXAMPLES`` examples per test and records the count in docs/.
"""

from __future__ import annotations

import json
import os
import shutil
import string
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from unlearnbench.cli import app

runner = CliRunner()
# make fuzz sets FUZZ_EXAMPLES (thousands); CI keeps each test to a few dozen cases.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None
fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck)) if EXAMPLES \
    else settings(suppress_health_check=list(HealthCheck))


STATS = os.environ.get("FUZZ_STATS")


class Reached(BaseException):
    """Raised where a command's real work starts: the inputs passed the boundary (BaseException, so
    neither the command's error handling nor the last line of defence turns it into an exit code)."""


def _reached(*_a, **_k):
    raise Reached


# The first step of each command's work (not its input checks).
SENTINELS = [
    ("unlearnbench.core.jobs", "fit"),                  # train: after the data and forget set are prepared
    ("unlearnbench.unlearn.jobs", "run"),               # unlearn: after checkpoint, data and config checks
    ("unlearnbench.robust.evaluate", "robust_accuracy"),  # attack
    ("unlearnbench.eval.engine.Evaluator", "evaluate"),  # evaluate
    ("unlearnbench.study", "run_study"),                 # benchmark
    ("unlearnbench.core.checkpoint", "save_checkpoint"),  # import: after the weights are read and checked
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The files the cases start from: a checkpoint, a config, a deletion request, a study, a FIFO,
    a folder, a file, links to the checkpoint."""
    from unlearnbench.core.checkpoint import save_checkpoint
    from unlearnbench.core.jobs import train_model
    from unlearnbench.core.train import TrainConfig
    from unlearnbench.study import EXAMPLES_DIR

    folder = tmp_path_factory.mktemp("fuzz-world")
    out = train_model("digits", "cnn", TrainConfig(epochs=1, batch_size=64, lr=0.05, seed=0, device="cpu"))
    save_checkpoint(folder / "orig.pt", out.model, out.meta)
    (folder / "cfg.yaml").write_text("epochs: 1\n")
    (folder / "req.txt").write_text("0\n5\n")
    (folder / "study.yaml").write_text((EXAMPLES_DIR / "digits.yaml").read_text())
    (folder / "afile").write_text("x\n")
    (folder / "adir").mkdir()
    return folder


@pytest.fixture()
def sandbox(world, monkeypatch):
    """A function that gives a fresh copy of ``world`` (links and FIFO re-made) per example."""
    import importlib

    import unlearnbench.api

    # unlearnbench.api re-exports save_checkpoint lazily and caches what it first resolves: resolved
    # while the sentinel is in place (monkeypatch's own getattr does it), the cache would keep the
    # sentinel for every later test of the session, so whether the API could save a checkpoint
    # depended on test order. Resolve the real one first, then replace the API's name as well.
    assert unlearnbench.api.save_checkpoint.__module__ == "unlearnbench.core.checkpoint"
    for module, name in SENTINELS:
        mod, _, cls = module.rpartition(".") if module.endswith("Evaluator") else (module, "", "")
        target = getattr(importlib.import_module(mod), cls) if cls else importlib.import_module(module)
        monkeypatch.setattr(target, name, _reached)
    monkeypatch.setattr(unlearnbench.api, "save_checkpoint", _reached)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    made: list[str] = []

    def fresh() -> Path:
        d = Path(tempfile.mkdtemp(prefix="fuzz-"))
        made.append(str(d))
        for p in world.iterdir():
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, d / p.name)
        os.symlink("orig.pt", d / "link.pt")
        os.link(d / "orig.pt", d / "hard.pt")
        os.mkfifo(d / "fifo")
        return d

    cwd = os.getcwd()
    yield fresh
    os.chdir(cwd)
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def _snapshot(folder: Path) -> dict:
    out = {}
    for p in sorted(folder.rglob("*")):
        st_ = p.lstat()
        out[str(p.relative_to(folder))] = (st_.st_mode, st_.st_size, st_.st_mtime_ns)
    return out


def check_contract(folder: Path, argv: list[str]) -> str:
    """Run ``argv`` in ``folder``; assert the boundary contract; return "reached" or "refused"."""
    try:
        outcome = _contract(folder, argv)
    except Reached:
        raise
    except BaseException as exc:
        _record("FAILED", repr(argv), repr(exc)[:300])  # seen even if a long run is stopped before the end
        raise
    _record(outcome)
    return outcome


def _record(*fields: str) -> None:
    if STATS:  # make fuzz counts the cases and how many got through to the work
        test = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0]
        with open(STATS, "a", encoding="utf-8") as fh:
            fh.write("\t".join([test, *(f.replace("\t", " ").replace("\n", " ") for f in fields)]) + "\n")


def _contract(folder: Path, argv: list[str]) -> str:
    os.chdir(folder)
    before = _snapshot(folder)
    try:
        res = runner.invoke(app, argv, env={"COLUMNS": "300"})
    except Reached:
        outcome = "reached"
    else:
        outcome = "refused"
        err = res.stderr.strip()
        assert res.exit_code in (0, 2), (argv, res.exit_code, res.output[-3000:])
        assert "Traceback" not in res.output, (argv, res.output[-3000:])
        assert res.exception is None or isinstance(res.exception, SystemExit), (argv, repr(res.exception))
        assert len(err.splitlines()) <= 1, (argv, err)
        if res.exit_code == 2:
            assert err, (argv, "exit 2 without a sentence")
    assert _snapshot(folder) == before, (argv, "a file was created or changed")
    return outcome


# ----------------------------------------------------------------------------- value strategies

PATHS = ["orig.pt", "./orig.pt", "link.pt", "hard.pt", "adir/../orig.pt", "req.txt", "./req.txt", "cfg.yaml",
         "study.yaml", "fifo", "adir", "afile/x.pt", "afile", "/dev/null", "mlflow.db", "", " ", "n" * 300,
         "new.pt", "out/new.pt", "x\ny.pt", "a\x00b", "-", "~nouser/x.pt", "adir/" + "d/" * 40 + "x.pt"]
NUMBERS = st.one_of(
    st.integers(-2**70, 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["8/255", "1/0", "nan", "-inf", "-0", "1e999", "010", "0x10", "0o7", "1:10", "1_000", "", " ",
                     "٣", "²", "true", "yes", "null", "~", "[1, 2]", "{a: 1}", "0.5", "1", "2", "3", str(2**63)]),
    st.text(max_size=6),
)
SPECS = st.one_of(
    st.sampled_from(["class:3", "class:99", "class:", "class:3,3", "class:-1", "random:0.1", "random:2", "random:0",
                     "random:-1", "random:nan", "random:1e400", "random:1.0", "indices:req.txt", "indices:cfg.yaml",
                     "indices:nope.txt", "indices:adir", "indices:fifo", "indices:", "", " ", "subclass:a/b",
                     "CLASS:3", "class: 3"]),
    st.text(max_size=12),
)
DEVICES = st.sampled_from(["auto", "cpu", "meta", "cuda", "cuda:0", "cuda:99", "mps", "xla", "", "cpu:0", "CPU",
                           "cuda:-1", "cuda:x"])
KEYS = st.sampled_from(["epochs", "lr", "batch_size", "seed", "momentum", "weight_decay", "device", "compile",
                        "label_smoothing", "nosuchkey", "", "seeds", "adv_eps", "mask_threshold", "alpha"])
SETS = st.lists(st.tuples(KEYS, NUMBERS).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=10), max_size=3)


def _opts(draw, table: dict) -> list[str]:
    """Some of the options in ``table`` (option -> strategy of its value, or None for a flag)."""
    chosen = draw(st.lists(st.sampled_from(sorted(table)), max_size=5, unique=True))
    argv: list[str] = []
    for opt in chosen:
        strat = table[opt]
        if strat is None:
            argv.append(opt)
        elif opt == "--set":
            for item in draw(SETS):
                argv += ["--set", item]
        else:
            argv += [opt, draw(strat)]
    return argv


P = st.sampled_from(PATHS)
COMMON = {"--device": DEVICES, "--set": SETS, "--config": P, "--seed": NUMBERS}


@st.composite
def train_argv(draw):
    table = {**COMMON, "--dataset": st.sampled_from(["digits", "synthetic", "nosuch", "cifar10", ""]),
             "--model": st.sampled_from(["cnn", "mlp", "nosuch", "torchvision:nosuch", "os:system", ""]),
             "--epochs": NUMBERS, "--lr": NUMBERS, "--batch-size": NUMBERS, "--split-seed": NUMBERS,
             "--val-fraction": NUMBERS, "--exclude": SPECS, "--subset": NUMBERS, "--per-class": NUMBERS,
             "--prune": NUMBERS, "--adversarial": st.sampled_from(["pgd_at", "nosuch", ""]), "--adv-eps": NUMBERS,
             "--recipe": st.sampled_from(["fast", "nosuch", ""]), "--out": P}
    return ["train", "--no-track", "-q", *_opts(draw, table)]


@st.composite
def unlearn_argv(draw):
    table = {**COMMON, "--forget": SPECS, "--out": P, "--reference": P, "--prune": NUMBERS,
             "--preset": st.sampled_from(["nosuch", ""]), "--subset": NUMBERS, "--adv-retain": st.sampled_from(["pgd", "x"]),
             "--no-eval": None}
    method = draw(st.sampled_from(["finetune", "salun", "scar", "nosuch", ""]))
    return ["unlearn", method, "-c", draw(P), "--no-track", "-q", *_opts(draw, table)]


@st.composite
def attack_argv(draw):
    table = {**COMMON, "--eps": NUMBERS, "--norm": st.sampled_from(["Linf", "L2", "L1", ""]), "--n": NUMBERS,
             "--split": st.sampled_from(["test", "forget", "retain", "train", "x"]), "--forget": SPECS,
             "--save-adv": P, "--batch-size": NUMBERS}
    name = draw(st.sampled_from(["pgd", "fgsm", "autoattack", "nosuch", ""]))
    return ["attack", name, "-c", draw(P), "--no-track", "-q", *_opts(draw, table)]


@st.composite
def evaluate_argv(draw):
    table = {**COMMON, "--forget": SPECS, "--reference": P, "--original": P, "--json": P, "--eps": NUMBERS,
             "--rte-seconds": NUMBERS, "--robustness": st.sampled_from(["pgd", "nosuch", ""]),
             "--metrics": st.sampled_from(["accuracy", "nosuch", ""]), "--robust-n": NUMBERS}
    return ["evaluate", "-c", draw(P), "--no-track", "-q", *_opts(draw, table)]


@st.composite
def benchmark_argv(draw):
    table = {"--set": st.lists(st.tuples(st.sampled_from(["seeds", "name", "methods", "train.epochs", "device",
                                                          "forget", "nosuch"]), NUMBERS)
                               .map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=3),
             "--json": P, "--work-dir": P, "--device": DEVICES, "--subset": NUMBERS, "--threads": NUMBERS,
             "--executor": st.sampled_from(["local", "ray", "x"]), "--cpus-per-job": NUMBERS, "--out": P}
    study = draw(st.sampled_from(["study.yaml", "cfg.yaml", "req.txt", "orig.pt", "nosuch", "adir", "fifo", ""]))
    return ["benchmark", study, "-q", *_opts(draw, table)]


@st.composite
def import_argv(draw):
    table = {"--normalize": st.sampled_from(["dataset", "imagenet", "0.5,0.25", "x", "", "0.5,0"]),
             "--split-seed": NUMBERS, "--val-fraction": NUMBERS, "--device": DEVICES}
    model = draw(st.sampled_from(["cnn", "torchvision:nosuch", "nosuch", ""]))
    return ["import", "--model", model, "--weights", draw(P), "--dataset", draw(st.sampled_from(["digits", "x"])),
            "-o", draw(P), "-q", *_opts(draw, table)]


COMMANDS = {"train": train_argv, "unlearn": unlearn_argv, "attack": attack_argv, "evaluate": evaluate_argv,
            "benchmark": benchmark_argv, "import": import_argv}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_fuzzed_options_keep_the_contract(sandbox, command):
    @fuzz_settings
    @given(argv=COMMANDS[command]())
    def case(argv):
        check_contract(sandbox(), argv)

    case()


# ----------------------------------------------------------------------------- file contents

TEXT = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.text(max_size=100).map(lambda t: t.encode("utf-16")),
    st.text(max_size=100).map(lambda t: b"\xef\xbb\xbf" + t.encode()),
    st.sampled_from([b"", b"\n", b"[" * 3000, b"{" * 3000, b"a: 1\na: 2\n", b"a: &x [*x]\n", b"!!python/object:os.system {}",
                     b"epochs: 010\n", b"epochs: 1:10\n", b"compile: yes\n", b"lr: .nan\n", b"seed: 99999999999999999999\n",
                     b"- 1\n- 2\n", b"epochs: 1\r\nlr: 0.1\r\n", b"\x00" * 10]),
)


@st.composite
def yaml_config(draw):
    keys = st.sampled_from(["epochs", "lr", "batch_size", "seed", "device", "compile", "momentum", "nosuch"])
    values = st.one_of(st.integers(-2**70, 2**70), st.floats(), st.booleans(), st.none(), st.text(max_size=5),
                       st.lists(st.integers(), max_size=3))
    data = draw(st.dictionaries(keys, values, max_size=4))
    return json.dumps(data).encode()  # JSON is YAML 1.2


@st.composite
def indices_file(draw):
    ints = draw(st.lists(st.integers(-5, 2000) | st.integers(-2**70, 2**70), max_size=20))
    junk = draw(st.lists(st.sampled_from(["", "# c", " 7 ", "٣", "²", "1.0", "0x1", "+3", "a", "\t4"]), max_size=3))
    lines = [str(i) for i in ints] + junk
    draw(st.randoms()).shuffle(lines)
    sep = draw(st.sampled_from(["\n", "\r\n"]))
    enc = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    return sep.join(lines).encode(enc)


@st.composite
def study_file(draw, base: str):
    import yaml

    data = yaml.safe_load(base)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(data) + ["nosuch"]))
        value = draw(st.one_of(st.integers(-2**70, 2**70), st.floats(), st.text(max_size=5), st.none(),
                               st.lists(st.integers(-2**65, 2**65), max_size=4), st.just([])))
        data[key] = value
    return json.dumps(data).encode()


@st.composite
def weights_file(draw):
    """Bytes of a file given where weights go: random bytes, or torch.save of dicts of odd tensors."""
    kind = draw(st.sampled_from(["bytes", "torch", "checkpoint"]))
    if kind == "bytes":
        return draw(TEXT)
    shapes = st.lists(st.integers(0, 4), max_size=3)
    fill = st.sampled_from([0.0, 1.0, float("nan"), float("inf"), -float("inf")])
    tensors = draw(st.dictionaries(st.sampled_from(["conv1.weight", "fc.weight", "fc.bias", "x", ""]),
                                   st.tuples(shapes, fill, st.sampled_from([torch.float32, torch.int64, torch.float16])),
                                   max_size=3))
    sd = {k: torch.full(s, v).to(dt) if dt.is_floating_point else torch.zeros(s, dtype=dt)
          for k, (s, v, dt) in tensors.items()}
    import io

    buf = io.BytesIO()
    if kind == "torch":
        torch.save(sd, buf)
    else:
        meta = draw(st.fixed_dictionaries({}, optional={
            "model": st.sampled_from(["cnn", "nosuch", 3]), "dataset": st.sampled_from(["digits", "x", None]),
            "num_classes": st.sampled_from([10, 0, -1, "ten", 2**70]), "in_channels": st.sampled_from([1, 3, 0]),
            "image_size": st.sampled_from([8, 0, 32]), "split_seed": st.sampled_from([0, -1, 2**70, "a"])}))
        torch.save({"format": draw(st.sampled_from(["unlearnbench-checkpoint-v1", "x"])), "state_dict": sd,
                    "meta": meta}, buf)
    return buf.getvalue()


def _with_file(sandbox, name: str, content: bytes) -> Path:
    d = sandbox()
    (d / name).write_bytes(content)
    return d


@fuzz_settings
@given(content=st.one_of(TEXT, yaml_config()))
def test_fuzzed_config_files(sandbox, content):
    check_contract(_with_file(sandbox, "c.yaml", content), ["train", "--no-track", "-q", "--config", "c.yaml",
                                                            "-o", "x.pt"])


@fuzz_settings
@given(content=st.one_of(TEXT, indices_file()), command=st.sampled_from(["train", "unlearn"]))
def test_fuzzed_deletion_requests(sandbox, content, command):
    argv = (["train", "--exclude", "indices:i.txt"] if command == "train" else
            ["unlearn", "finetune", "-c", "orig.pt", "-f", "indices:i.txt"])
    check_contract(_with_file(sandbox, "i.txt", content), [*argv, "--no-track", "-q", "-o", "x.pt"])


@fuzz_settings
@given(data=st.data())
def test_fuzzed_study_files(sandbox, world, data):
    content = data.draw(st.one_of(TEXT, study_file((world / "study.yaml").read_text())))
    check_contract(_with_file(sandbox, "s.yaml", content), ["benchmark", "s.yaml", "-q"])


@fuzz_settings
@given(content=weights_file(), command=st.sampled_from(["attack", "evaluate", "unlearn", "import", "reference"]))
def test_fuzzed_checkpoints_and_weights(sandbox, content, command):
    argv = {"attack": ["attack", "pgd", "-c", "w.pt", "--n", "4", "--no-track"],
            "evaluate": ["evaluate", "-c", "w.pt", "--no-track"],
            "unlearn": ["unlearn", "finetune", "-c", "w.pt", "-f", "class:3", "-o", "x.pt", "--no-track"],
            "import": ["import", "--model", "cnn", "--weights", "w.pt", "--dataset", "digits", "-o", "x.pt"],
            "reference": ["evaluate", "-c", "orig.pt", "--forget", "class:3", "-r", "w.pt", "--no-track"]}[command]
    check_contract(_with_file(sandbox, "w.pt", content), [*argv, "-q"])


@fuzz_settings
@given(content=st.one_of(TEXT, st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=5),
                                            lambda c: st.lists(c, max_size=3) | st.dictionaries(
                                                st.sampled_from(["values", "counts", "meta", "name", "x"]), c,
                                                max_size=3), max_leaves=10).map(lambda v: json.dumps(v).encode())))
def test_fuzzed_report_json_references(sandbox, content):
    check_contract(_with_file(sandbox, "r.json", content),
                   ["evaluate", "-c", "orig.pt", "--forget", "class:3", "-r", "r.json", "--no-track", "-q"])


@fuzz_settings
@given(value=st.text(alphabet=string.printable + "\u2028\x85\u202e\x00", max_size=12),
       option=st.sampled_from(["--json", "--out"]))
def test_fuzzed_output_names(sandbox, value, option):
    argv = (["evaluate", "-c", "orig.pt", "--no-track", "-q", "--json", value] if option == "--json" else
            ["train", "--no-track", "-q", "-o", value])
    check_contract(sandbox(), argv)
