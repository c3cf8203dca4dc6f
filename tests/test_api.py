"""The public Python API with a user's own model (plain torchvision / nn.Sequential) and float
tensors: each entry point against an independent computation, and each mistake as one sentence."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import unlearnbench as ub
from unlearnbench.core.errors import DataError, ModelError, UserError
from unlearnbench.core.models import penultimate_features


def _tensors(n: int, seed: int, size: int = 8, classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g).float() / 255
    return x, torch.randint(0, classes, (n,), generator=g)


@pytest.fixture(scope="module")
def user_data():
    """Float tensors in [0, 1] (multiples of 1/255, so kept exactly): forget 12, retain 48, test 30."""
    x, y = _tensors(60, 0)
    return ub.UnlearnData.from_tensors(forget=(x[:12], y[:12]), retain=(x[12:], y[12:]), test=_tensors(30, 1)), x, y


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10).eval()


def _acc(model, x, y) -> float:
    with torch.no_grad():
        return 100.0 * (model(x).argmax(1) == y).float().mean().item()


# ----------------------------------------------------------------------------- the package


def test_import_is_light_and_names_resolve():
    code = "import sys, unlearnbench; assert 'torch' not in sys.modules, 'torch imported eagerly'"
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in ub.__all__:
        assert getattr(ub, name) is not None
    with pytest.raises(AttributeError):
        ub.no_such_name  # noqa: B018


def test_the_api_package_is_light_and_every_name_resolves():
    """``import unlearnbench.api`` (what every command imports, ``ls`` and ``--help`` included) imports
    no torch; each exported name lives in the module of its concern and is the same object both ways."""
    import importlib

    from unlearnbench import api

    code = ("import sys, unlearnbench.api, unlearnbench.api.environment; "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert len(api.__all__) >= 23
    from unlearnbench.core import errors

    for name in api.__all__:
        obj = getattr(api, name)
        assert obj is getattr(importlib.import_module(obj.__module__), name)
        if isinstance(obj, type):  # the error types, the very classes the library raises
            assert obj is getattr(errors, name) and issubclass(obj, errors.UserError), name
        elif name in ("save_checkpoint", "load_checkpoint"):  # the checkpoint format, as it is
            assert obj.__module__ == "unlearnbench.core.checkpoint"
        else:
            assert obj.__module__.startswith("unlearnbench.api."), (name, obj.__module__)
    with pytest.raises(AttributeError):
        api.no_such_name  # noqa: B018


def test_unlearn_is_callable_whichever_import_came_first():
    import unlearnbench.unlearn.salun  # noqa: F401  (re-binds unlearnbench.unlearn to the package)
    from unlearnbench import unlearn

    assert unlearn is ub.unlearn and callable(unlearn) and hasattr(unlearn, "run")


# ----------------------------------------------------------------------------- data


def test_from_tensors_keeps_images_and_labels_exactly(user_data):
    data, x, y = user_data
    assert data.forget.x.dtype == torch.uint8
    assert torch.equal(data.forget.x.float() / 255, x[:12]) and torch.equal(data.retain.y, y[12:])
    assert torch.equal(data.retain.idx, torch.arange(12, 60))  # forget and retain never share an index
    assert data.num_classes == 10 and len(data.val) == 0 and data.info.image_size == 8
    assert not data.spec.classwise and data.test_retained is None
    # uint8 in, the same uint8 out; numpy works too.
    u = (x * 255).round().to(torch.uint8)
    again = ub.UnlearnData.from_tensors(forget=(u[:12].numpy(), y[:12].numpy()), retain=(u[12:], y[12:]),
                                        test=(u[:5], y[:5]), num_classes=12)
    assert torch.equal(again.forget.x, u[:12]) and again.num_classes == 12


def test_a_forget_set_of_whole_classes_is_classwise():
    x, y = _tensors(80, 2, classes=4)
    gone = y == 2
    xt, yt = _tensors(40, 3, classes=4)
    data = ub.UnlearnData.from_tensors(forget=(x[gone], y[gone]), retain=(x[~gone], y[~gone]), test=(xt, yt),
                                       class_names=["a", "b", "c", "d"])
    assert data.spec.classwise and data.forget_classes == (2,) and str(data.spec) == "class:2"
    assert len(data.test_forgotten) == int((yt == 2).sum()) and len(data.test_retained) == int((yt != 2).sum())
    assert data.info.class_names == ("a", "b", "c", "d")


def test_floats_off_the_8_bit_grid_are_rounded_with_one_warning():
    x = torch.full((4, 1, 4, 4), 0.3)  # 76.5/255
    y = torch.tensor([0, 1, 0, 1])
    with pytest.warns(UserWarning, match="8-bit") as caught:
        data = ub.UnlearnData.from_tensors(forget=(x, y), retain=(x, y), test=(x, y))
    assert len(caught) == 1 and "forget, retain, test" in str(caught[0].message)
    assert int(data.forget.x[0, 0, 0, 0]) == round(0.3 * 255)


_X, _Y = _tensors(10, 4)


@pytest.mark.parametrize("forget,needle", [
    ((_X * 2 - 1, _Y), "look normalised"),
    (((_X - 0.5) / 0.25, _Y), "with_normalization"),
    ((_X * 255, _Y), "divide them by 255"),
    ((_X.permute(0, 2, 3, 1), _Y), "channels-last"),
    ((_X, _Y[:9]), "10 images but 9 labels"),
    ((_X, _Y.float()), "labels have dtype torch.float32"),
    ((_X.to(torch.int32), _Y), "dtype torch.int32"),
    ((_X.double().masked_fill(_X > 0.5, float("nan")), _Y), "NaN"),
    ((_X[:, :, :4], _Y), "every set needs one image shape"),
    ((_X, _Y + 20), "num_classes is"),
    ((_X[:, 0, 0], _Y), "(N, C, H, W)"),
    (_X, "must be an (images, labels) pair"),
    (torch.utils.data.TensorDataset(_X, _Y), "UnlearnData.from_datasets"),
    (("not", "images"), "must be a torch.Tensor or numpy array"),
])
def test_bad_input_is_one_sentence(forget, needle):
    with pytest.raises(DataError) as err:
        ub.UnlearnData.from_tensors(forget=forget, retain=(_X, _Y), test=(_X, _Y), num_classes=None if needle != "num_classes is" else 10)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_from_datasets_reads_an_imagefolder_of_pil_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = {}
    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            arr = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            Image.fromarray(arr).save(tmp_path / cls / f"{i}.png")
            pixels[(cls, i)] = arr
    folder = torchvision.datasets.ImageFolder(str(tmp_path))
    data = ub.UnlearnData.from_datasets(
        forget=torch.utils.data.Subset(folder, [0]), retain=torch.utils.data.Subset(folder, [1, 2, 3, 4, 5]), test=folder,
    )
    assert data.info.class_names == ("cat", "dog") and data.info.in_channels == 3
    assert torch.equal(data.forget.x[0], torch.from_numpy(pixels[("cat", 0)]).permute(2, 0, 1))
    assert data.test.y.tolist() == [0, 0, 0, 1, 1, 1]
    normalised = torchvision.datasets.ImageFolder(
        str(tmp_path), transform=torchvision.transforms.Compose([
            torchvision.transforms.ToTensor(), torchvision.transforms.Normalize((0.5,) * 3, (0.2,) * 3)]))
    with pytest.raises(DataError, match="look normalised"):
        ub.UnlearnData.from_datasets(forget=normalised, retain=normalised, test=normalised)


def test_from_dataset_with_a_deletion_request():
    x, y = _tensors(50, 5, classes=3)
    train, test = torch.utils.data.TensorDataset(x, y), torch.utils.data.TensorDataset(*_tensors(20, 6, classes=3))
    data = ub.UnlearnData.from_dataset(train, test, forget=[4, 9, 31])
    assert sorted(data.forget.idx.tolist()) == [4, 9, 31] and len(data.retain) == 47
    assert torch.equal(data.forget.x.float() / 255, x[[4, 9, 31]])
    by_class = ub.UnlearnData.from_dataset(train, test, forget="class:1", val_fraction=0.2, split_seed=3)
    assert set(by_class.forget.y.tolist()) == {1} and len(by_class.val) > 0
    held_out = by_class.val.idx.tolist()[0]
    with pytest.raises(DataError, match="validation split"):
        ub.UnlearnData.from_dataset(train, test, forget=[held_out], val_fraction=0.2, split_seed=3)
    for bad, needle in (([4, 4], "more than once"), ([50], "out of range"), ([], "non-empty"), (list(range(50)), "every")):
        with pytest.raises(DataError, match=needle):
            ub.UnlearnData.from_dataset(train, test, forget=bad)


# ----------------------------------------------------------------------------- models


def test_with_normalization_is_the_first_layer(resnet):
    x, _ = _tensors(4, 7)
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    wrapped = ub.with_normalization(resnet, mean, std)
    manual = resnet((x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1))
    assert torch.allclose(wrapped(x), manual, atol=1e-6)
    with pytest.raises(UserError, match="positive"):
        ub.with_normalization(resnet, 0.5, 0.0)
    with pytest.raises(ModelError, match="nn.Module"):
        ub.with_normalization(lambda x: x, 0.5, 0.5)


class _Trunk(nn.Module):
    """A ``features`` *submodule* (like torchvision VGG): conv maps, not penultimate features."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4, 10)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def test_penultimate_features_is_the_input_of_the_head(resnet):
    x, _ = _tensors(3, 8)
    r = resnet
    stem = r.maxpool(r.relu(r.bn1(r.conv1(x))))
    manual = torch.flatten(r.avgpool(r.layer4(r.layer3(r.layer2(r.layer1(stem))))), 1)
    assert torch.allclose(penultimate_features(r, x), manual)
    trunk = _Trunk().eval()
    assert torch.allclose(penultimate_features(trunk, x), trunk.pool(trunk.features(x)).flatten(1))
    # Gradients flow through the hooked features (SCAR trains on them).
    penultimate_features(trunk, x).sum().backward()
    assert trunk.features[0].weight.grad is not None


class _HeadFirst(nn.Module):
    """The head registered before the trunk's own nn.Linear: the hook goes by output, not order."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(16, 10)
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(192, 16), nn.ReLU())

    def forward(self, x):
        return self.head(self.body(x))


def test_penultimate_features_finds_the_head_by_its_output():
    model, x = _HeadFirst(), _tensors(3, 11)[0]
    assert torch.equal(penultimate_features(model, x), model.body(x))


@pytest.mark.parametrize("model,needle", [
    (nn.Sequential(nn.Conv2d(3, 10, 8), nn.Flatten()), "no nn.Linear"),
    (nn.Sequential(nn.Flatten(), nn.Linear(192, 10), nn.Softmax(1)), "produces the model's output (is a softmax"),
])
def test_penultimate_features_says_when_it_cannot(model, needle):
    with pytest.raises(ModelError, match=re.escape(needle)):
        penultimate_features(model, _tensors(2, 9)[0])


# ----------------------------------------------------------------------------- entry points


def test_evaluate_a_torchvision_model_on_float_tensors(user_data, resnet):
    data, x, y = user_data
    report = ub.evaluate(resnet, data, metrics=["forget_acc", "retain_acc", "test_acc"])
    xt, yt = _tensors(30, 1)
    assert report["forget_acc"] == pytest.approx(_acc(resnet, x[:12], y[:12]))
    assert report["retain_acc"] == pytest.approx(_acc(resnet, x[12:], y[12:]))
    assert report["test_acc"] == pytest.approx(_acc(resnet, xt, yt))
    frame = report.to_frame()
    assert frame.loc["test_acc", "value"] == report["test_acc"]
    assert report.to_dict()["values"]["forget_acc"] == report["forget_acc"]
    assert ub.Report.from_json(report.to_json()).values == report.values
    ref = ub.evaluate(resnet, data, metrics=["forget_acc"], reference={"forget_acc": 40.0})
    assert ref["gap/forget_acc"] == pytest.approx(abs(report["forget_acc"] - 40.0))


def test_unlearn_a_torchvision_model(user_data, resnet):
    data, _, _ = user_data
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    result = ub.unlearn("salun", resnet, data, {"epochs": 1, "batch_size": 32}, seed=0)
    assert all(torch.equal(before[k], v) for k, v in resnet.state_dict().items())  # never modified
    assert result.model is not resnet and result.seconds > 0
    changed = [k for k, v in result.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert "fc.weight" in changed


def _trained_digits_mlp(splits):
    xtr, ytr = splits.train.x.float() / 255, splits.train.y
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(net(xtr), ytr).backward()
        opt.step()
    return net.eval()


class _WithFeatures(nn.Module):
    """The same MLP with an explicit ``features`` method (what registered models have)."""

    def __init__(self, seq: nn.Sequential) -> None:
        super().__init__()
        self.seq = seq

    def features(self, x):
        return self.seq[2](self.seq[1](self.seq[0](x)))

    def forward(self, x):
        return self.seq[3](self.features(x))


def test_scar_unlearns_a_plain_sequential(digits_splits):
    net = _trained_digits_mlp(digits_splits)
    xtr, ytr = digits_splits.train.x.float() / 255, digits_splits.train.y
    xte, yte = digits_splits.test.x.float() / 255, digits_splits.test.y
    gone = ytr == 3
    data = ub.UnlearnData.from_tensors(forget=(xtr[gone], ytr[gone]), retain=(xtr[~gone], ytr[~gone]), test=(xte, yte))
    cfg = {"epochs": 5, "lr": 1e-2, "ood_size": 256, "ood_batch_size": 64, "batch_size": 64}
    out = ub.unlearn("scar", net, data, cfg, seed=0).model
    kept = yte != 3
    assert _acc(net, xtr[gone], ytr[gone]) > 95 and _acc(out, xtr[gone], ytr[gone]) < 10
    assert _acc(out, xte[kept], yte[kept]) > 90
    # The hook finds exactly the features an explicit features() method returns: same run, same weights.
    explicit = ub.unlearn("scar", _WithFeatures(net), data, cfg, seed=0).model
    for a, b in zip(out.parameters(), explicit.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def _fgsm(model, x, y, eps):
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y).backward()
    return (x + eps * x.grad.sign()).clamp(0, 1).detach()


def test_attack_and_robust_accuracy_match_a_hand_written_fgsm(user_data, resnet):
    data, _, _ = user_data
    xt, yt = _tensors(30, 1)
    eps = 4 / 255
    x_adv = ub.attack(resnet, xt, yt, "fgsm", eps=eps)
    assert torch.allclose(x_adv, _fgsm(resnet, xt, yt, eps), atol=1e-6)
    expected = 100.0 * ((resnet(xt).argmax(1) == yt) & (resnet(x_adv).argmax(1) == yt)).float().mean().item()
    for given in (data, (xt, yt), torch.utils.data.TensorDataset(xt, yt)):
        res = ub.robust_accuracy(resnet, given, "fgsm", eps=eps)
        assert res.n == 30 and res.robust_acc == pytest.approx(expected) and res.clean_acc == pytest.approx(_acc(resnet, xt, yt))


def test_entry_points_reject_other_types_in_one_sentence(user_data, resnet):
    from unlearnbench import unlearn
    from unlearnbench.eval.engine import Evaluator
    from unlearnbench.robust.evaluate import robust_accuracy
    from unlearnbench.robust.threat import ThreatModel

    data, x, y = user_data
    calls = [
        (lambda: ub.evaluate(resnet, {"forget": x}), "takes an UnlearnData, not a dict"),
        (lambda: Evaluator().evaluate(resnet, {"forget": x}), "takes an UnlearnData"),
        (lambda: unlearn.run("salun", resnet, {"forget": x}), "takes an UnlearnData"),
        (lambda: robust_accuracy(resnet, "x", "fgsm", ThreatModel()), "not a str"),
        (lambda: ub.evaluate("resnet", data), "nn.Module"),
        (lambda: ub.unlearn("salun", torchvision.models.resnet18(num_classes=5), data), "(2, 5)"),
        (lambda: ub.evaluate(nn.Sequential(nn.Flatten(), nn.Linear(12, 10)), data), "cannot take 3x8x8 images"),
        (lambda: ub.attack(resnet, x.to(torch.uint8), y), "float image tensors"),
        (lambda: ub.robust_accuracy(resnet, data, "fgsm", split="nope"), "Unknown split"),
    ]
    for call, needle in calls:
        with pytest.raises(UserError) as err:
            call()
        assert needle in str(err.value), str(err.value)


def test_load_model_reads_foreign_and_platform_checkpoints(tmp_path, resnet):
    from unlearnbench.core.checkpoint import save_checkpoint

    x, _ = _tensors(2, 10)
    path = tmp_path / "theirs.pth"
    torch.save({"model": {f"module.{k}": v for k, v in resnet.state_dict().items()}, "epoch": 3}, path)
    loaded = ub.load_model("torchvision:resnet18", path, num_classes=10)
    assert torch.equal(loaded(x), resnet(x))
    normalised = ub.load_model("torchvision:resnet18", path, num_classes=10, mean=0.5, std=0.25)
    assert torch.allclose(normalised(x), resnet((x - 0.5) / 0.25), atol=1e-6)
    with pytest.raises(UserError, match=r"fc.weight is 10x512 in the file, 7x512 in the model"):
        ub.load_model("torchvision:resnet18", path, num_classes=7)
    ours = save_checkpoint(tmp_path / "ours.pt", loaded, {
        "model": "torchvision:resnet18", "dataset": "user", "num_classes": 10, "in_channels": 3, "image_size": 8,
        "split_seed": 0})
    assert torch.equal(ub.load_model(ours)(x), resnet(x))


def test_log_report_is_one_call(user_data, resnet, mlflow_uri):
    import mlflow

    data, _, _ = user_data
    report = ub.evaluate(resnet, data, metrics=["forget_acc", "test_acc"])
    run_id = ub.log_report(report, uri=mlflow_uri, experiment="api-log-report", tags={"team": "privacy"})
    run = mlflow.tracking.MlflowClient(mlflow_uri).get_run(run_id)
    assert run.data.metrics["forget_acc"] == pytest.approx(report["forget_acc"])
    assert run.data.tags["team"] == "privacy"
    with pytest.raises(DataError, match="takes a Report"):
        ub.log_report(report.to_dict())
