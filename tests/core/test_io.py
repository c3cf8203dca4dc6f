from __future__ import annotations

import pytest

from unlearnbench.core.io import atomic_write


def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "f.txt"
    with atomic_write(target, "w") as fh:
        fh.write("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "first"  # the old file survives a failed write
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.txt"]  # no temp file left


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_gives_the_mode_a_new_file_gets_under_the_umask(tmp_path, umask, mode):
    import os
    import stat

    old = os.umask(umask)
    try:
        with atomic_write(tmp_path / "new.txt", "w") as fh:
            fh.write("x")
        (tmp_path / "plain.txt").write_text("x")  # what open() itself gives, for comparison
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == mode == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    import stat

    target = tmp_path / "f.txt"
    target.write_text("old")
    target.chmod(0o640)
    with atomic_write(target, "w") as fh:
        fh.write("new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640
