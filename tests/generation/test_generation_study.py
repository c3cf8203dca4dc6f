"""The generation study: shipped files load and are checked before any work; the full
digits-generation benchmark (deep) runs end to end and its report shows every method beside
Retrain with UA, FID (its extractor), intervals, n, run time and sample grids."""

from __future__ import annotations

import pytest
import yaml
from gen_study_helpers import TINY_GEN
from typer.testing import CliRunner

from unlearnbench import api
from unlearnbench.cli import app
from unlearnbench.core.config import load_yaml
from unlearnbench.core.errors import ConfigError
from unlearnbench.study import EXAMPLES_DIR
from unlearnbench.study.generation import gen_study_from_dict

runner = CliRunner()


@pytest.mark.parametrize("name", ["digits-generation", "cifar10-ddpm-salun"])
def test_shipped_generation_studies_load(name):
    cfg = gen_study_from_dict(load_yaml(EXAMPLES_DIR / f"{name}.yaml"))
    assert cfg.task == "generation" and cfg.methods and all(m.name.startswith("ddpm_") for m in cfg.methods)
    assert cfg.differences


def test_a_generation_study_is_checked_before_any_work():
    base = load_yaml(EXAMPLES_DIR / "digits-generation.yaml")
    with pytest.raises(ConfigError, match="unlearns classifiers"):
        gen_study_from_dict({**base, "methods": [{"name": "salun"}]})
    with pytest.raises(ConfigError, match="whole classes"):
        gen_study_from_dict({**base, "forget": ["random:0.1"]})
    with pytest.raises(ConfigError, match="generation model"):
        gen_study_from_dict({**base, "model": "cnn"})
    with pytest.raises(ConfigError, match="may hold only letters"):  # the name is the report's folder
        gen_study_from_dict({**base, "name": "../elsewhere"})
    with pytest.raises(ConfigError, match="stepz"):
        gen_study_from_dict({**base, "methods": [{"name": "ddpm_salun", "config": {"stepz": 1}}]})


@pytest.mark.deep
def test_digits_generation_benchmark_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["benchmark", "digits-generation", "-q", "--tracking-uri",
                                 f"sqlite:///{tmp_path / 'm.db'}", "--work-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "reports" / "digits-generation" / "report.md").read_text()
    html = (tmp_path / "reports" / "digits-generation" / "report.html").read_text()
    for label in ("retrain", "original", "ddpm_salun", "ddpm_random_label", "ddpm_grad_ascent", "ddpm_finetune",
                  "ddpm_esd", "ddpm_selective_amnesia"):
        assert f"| {label} |" in md and f"<b>{label}</b>" in html
    assert "penultimate features of cnn" in md and "n FID gen / real" in md and "data:image/png;base64," in html


def test_benchmark_refuses_options_a_generation_study_does_not_take(tmp_path):
    result = runner.invoke(app, ["benchmark", "digits-generation", "--subset", "100", "--tracking-uri",
                                 f"sqlite:///{tmp_path / 'm.db'}", "--work-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "--subset does not apply to a generation study" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "m.db").exists()


def test_an_unknown_study_task_is_refused_naming_the_known_ones(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text(yaml.safe_dump({**TINY_GEN, "task": "segmentation"}))
    result = runner.invoke(app, ["benchmark", str(path), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}",
                                 "--work-dir", str(tmp_path / "cache")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "Unknown study task 'segmentation'; the known tasks are classification, generation." in result.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "m.db").exists()
    with pytest.raises(ConfigError, match="known tasks are classification, generation"):
        api.load_study(path)


def test_an_executor_a_task_does_not_declare_is_refused(monkeypatch, tmp_path):
    """Executors are a task's declared capability: the check reads the registry, not the task name."""
    import dataclasses

    from unlearnbench.study.tasks import STUDY_TASKS

    cfg = api.load_study("digits-generation")
    entry = STUDY_TASKS.entry("generation")
    monkeypatch.setitem(STUDY_TASKS._entries, "generation",
                        dataclasses.replace(entry, obj=dataclasses.replace(entry.obj, executors=("local",))))
    with pytest.raises(ConfigError, match="A generation study runs on the local executor, not ray."):
        api.check_study_executor(cfg, "ray")
    api.check_study_executor(cfg, "local")
    db, cache = tmp_path / "m.db", tmp_path / "cache"
    result = runner.invoke(app, ["benchmark", "digits-generation", "--executor", "ray", "--tracking-uri",
                                 f"sqlite:///{db}", "--work-dir", str(cache), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "A generation study runs on the local executor, not ray." in result.output
    assert not cache.exists() and not db.exists() and not (tmp_path / "r").exists()
