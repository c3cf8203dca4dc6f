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
