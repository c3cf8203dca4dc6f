"""MLflow stores at the boundary: another program's SQLite file is refused without being changed,
and concurrent first writers on a new store all land their runs (the store's creation is locked)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from typer.testing import CliRunner

from unlearnbench.cli import app

runner = CliRunner()
TRAIN = ["train", "--dataset", "digits", "--model", "cnn", "--epochs", "1", "-q", "-o", "x.pt"]


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_another_programs_sqlite_file_is_refused_and_left_unchanged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    con = sqlite3.connect(tmp_path / "app.db")
    con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    con.execute("INSERT INTO users VALUES (1, 'ada')")
    con.commit()
    con.close()
    before = _digest(tmp_path / "app.db")
    res = runner.invoke(app, [*TRAIN, "--tracking-uri", f"sqlite:///{tmp_path / 'app.db'}"])
    out = res.output.strip()
    assert res.exit_code == 2 and len(out.splitlines()) == 1, out
    assert "another program (tables users)" in out and "left unchanged" in out, out
    assert _digest(tmp_path / "app.db") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no x.pt, no mlartifacts


def test_an_empty_file_and_an_mlflow_store_are_accepted(tmp_path):
    from unlearnbench.eval import tracking

    (tmp_path / "empty.db").write_bytes(b"")
    tracking.check_reachable(f"sqlite:///{tmp_path / 'empty.db'}")  # SQLite takes it as a new database
    tracking.setup(f"sqlite:///{tmp_path / 'new.db'}", "e")
    tracking.check_reachable(f"sqlite:///{tmp_path / 'new.db'}")
    assert {"alembic_version", "experiments", "runs"} <= {
        r[0] for r in sqlite3.connect(tmp_path / "new.db").execute("SELECT name FROM sqlite_master")}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files")
def test_a_read_only_store_is_refused_before_training(tmp_path, monkeypatch):
    from unlearnbench.eval import tracking

    tracking.setup(f"sqlite:///{tmp_path / 'ro.db'}", "e")
    os.chmod(tmp_path / "ro.db", 0o444)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, [*TRAIN, "--tracking-uri", f"sqlite:///{tmp_path / 'ro.db'}"])
    assert res.exit_code == 2 and "cannot be written" in res.output and not (tmp_path / "x.pt").exists()


WRITER = textwrap.dedent("""
    import os, sys, time
    from unlearnbench.eval import tracking
    import mlflow  # imported before the start line, so the four really start together
    open(sys.argv[2] + "-ready-" + sys.argv[3], "w").close()
    while not os.path.exists(sys.argv[2]):
        time.sleep(0.005)
    tracking.setup(sys.argv[1], "first-writers")
    with tracking.run("writer " + sys.argv[3], params={"writer": sys.argv[3]}):
        pass
    print("landed", sys.argv[3])
""")


def test_four_concurrent_first_writers_all_land_their_runs(tmp_path):
    uri = f"sqlite:///{tmp_path / 'new.db'}"
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, uri, str(go), str(i)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(4)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go-ready-*"))) < 4 and time.monotonic() < deadline:
        assert all(p.poll() is None for p in procs), [p.communicate()[1][-2000:] for p in procs if p.poll()]
        time.sleep(0.05)
    go.write_text("")
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    con = sqlite3.connect(tmp_path / "new.db")
    names = sorted(r[0] for r in con.execute("SELECT name FROM runs"))
    assert names == [f"writer {i}" for i in range(4)]
