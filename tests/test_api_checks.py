"""One set of input checks serves the API and the CLI (issue 24, with #20's item).

- ``attack()`` and ``robust_accuracy()`` check the model and the labels exactly as ``evaluate()``
  does (through ``UnlearnData.from_tensors``): generated bad labels and bad models are refused by
  all three, each in one sentence (a ``UserError``), before any attack runs.
- ``unlearnbench attack`` and ``api.robust_accuracy`` share their option checks
  (``robust.jobs.check_attack_request``): a generated bad ``n``, batch size, split, norm or eps
  gives the CLI's exit 2 with the very sentence the API raises.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import unlearnbench as ub
from unlearnbench.cli import app
from unlearnbench.core.errors import UserError

N, K = 12, 4
X = torch.rand(N, 1, 8, 8, generator=torch.Generator().manual_seed(0))
Y = torch.arange(N) % K


def _model(classes: int = K, channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * 64, classes))


MODEL = _model()


def _evaluate(model, labels):
    data = ub.UnlearnData.from_tensors(forget=(X[:4], labels[:4]), retain=(X[4:], labels[4:]), test=(X, Y),
                                       num_classes=K)
    return ub.evaluate(model, data, metrics=["forget_acc"])


def _attack(model, labels):
    return ub.attack(model, X, labels, "fgsm", eps=0.1)


def _robust(model, labels):
    return ub.robust_accuracy(model, (X, labels), "fgsm", eps=0.1)


ENTRY_POINTS = {"evaluate": _evaluate, "attack": _attack, "robust_accuracy": _robust}


def _one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert isinstance(exc, UserError), repr(exc)
    assert "\n" not in text and text.endswith((".", ")")), text
    return text


# Labels each entry point must refuse: wrong dtype, out of range for the model's K classes, wrong
# count, wrong shape.
bad_labels = st.one_of(
    st.builds(lambda v: Y.float() + v, st.floats(0.0, 0.9)).map(lambda t: ("float", t)),
    st.builds(lambda i, v: torch.where(torch.arange(N) == i, torch.tensor(v), Y), st.integers(0, N - 1),
              st.integers(-1000, -1)).map(lambda t: ("negative", t)),
    st.builds(lambda i, v: torch.where(torch.arange(N) == i, torch.tensor(v), Y), st.integers(0, N - 1),
              st.integers(K, 1000)).map(lambda t: ("too large", t)),
    st.integers(1, N - 1).map(lambda m: ("count", Y[:m])),
    st.just(("bool", Y.bool())),
    st.just(("2-D", torch.stack([Y, Y], 1))),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bad_labels, entry=st.sampled_from(sorted(ENTRY_POINTS)))
def test_bad_labels_are_refused_by_evaluate_attack_and_robust_accuracy(case, entry):
    _, labels = case
    with pytest.raises(UserError) as err:
        ENTRY_POINTS[entry](MODEL, labels)
    assert "label" in _one_sentence(err.value).lower()


class _Tuple(nn.Module):
    def forward(self, x):
        return (x.flatten(1)[:, :K],)


bad_models = st.sampled_from([
    ("not a module", lambda: (lambda x: x)),
    ("a string", lambda: "cnn"),
    ("fewer logits than classes", lambda: _model(classes=K - 1)),
    ("other channels", lambda: _model(channels=3)),
    ("returns a tuple", lambda: _Tuple()),
    ("returns one score per image", lambda: nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))),
])


@settings(max_examples=30, deadline=None)
@given(case=bad_models, entry=st.sampled_from(sorted(ENTRY_POINTS)))
def test_bad_models_are_refused_by_evaluate_attack_and_robust_accuracy(case, entry):
    _, make = case
    with pytest.raises(UserError) as err:
        ENTRY_POINTS[entry](make(), Y)
    _one_sentence(err.value)


def test_good_inputs_pass_every_entry_point():
    assert _evaluate(MODEL, Y).values["forget_acc"] >= 0
    assert _attack(MODEL, Y).shape == X.shape
    assert _robust(MODEL, Y).n == N


# ----------------------------------------------------------------------------- CLI and API agree


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from unlearnbench.core.checkpoint import save_checkpoint
    from unlearnbench.core.jobs import train_model
    from unlearnbench.core.train import TrainConfig

    folder = tmp_path_factory.mktemp("api-checks")
    out = train_model("digits", "mlp", TrainConfig(epochs=1, batch_size=128, device="cpu"))
    save_checkpoint(folder / "m.pt", out.model, out.meta)
    return folder / "m.pt"


bad_options = st.one_of(
    st.integers(-10**6, -1).map(lambda v: ("n", v, ["--n", str(v)])),
    st.integers(-10**6, 0).map(lambda v: ("batch_size", v, ["--batch-size", str(v)])),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
      .filter(lambda s: s not in ("test", "forget", "retain", "val")).map(lambda v: ("split", v, ["--split", v])),
    st.sampled_from(["L1", "Lmax", "l3", "inf2"]).map(lambda v: ("norm", v, ["--norm", v])),
    st.sampled_from(["-0.1", "0", "abc", "8/0", "1/-255", "nan"]).map(lambda v: ("eps", v, ["--eps", v])),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_options)
def test_the_cli_and_the_api_refuse_a_bad_option_with_the_same_sentence(checkpoint, case):
    key, value, argv = case
    api_value = {"n": value, "batch_size": value, "split": value, "norm": value, "eps": value}[key]
    with pytest.raises(UserError) as err:
        ub.robust_accuracy(MODEL, (X, Y), "pgd", **{key: api_value})
    sentence = _one_sentence(err.value)
    res = CliRunner().invoke(app, ["attack", "pgd", "-c", str(checkpoint), "--no-track", "-q", *argv],
                             env={"COLUMNS": "400"})
    out = re.sub(r"\s+", " ", res.output).strip()
    assert res.exit_code == 2, out
    assert "Traceback" not in out
    assert sentence in out, (sentence, out)
