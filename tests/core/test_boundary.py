"""The file and value boundary (unlearnbench.core.boundary): what is refused, and that checking
leaves nothing behind."""

from __future__ import annotations

import os
import string
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unlearnbench.core.boundary import (
    InputError,
    Output,
    bad_character,
    check_output,
    check_value,
    declare,
    read_text,
    spec_paths,
)
from unlearnbench.core.errors import ConfigError, OutputError

# ----------------------------------------------------------------------------- values


@pytest.mark.parametrize("value", ["exp\n* * * * * CMD", "a\rb", "tab\there", "nul\x00", "esc\x1b[31m", "del\x7f",
                                   "c1\x85", "ls\u2028", "ps\u2029", "bidi\u202e", "iso\u2066", "lone\udcff"])
def test_check_value_refuses_every_line_breaking_or_hidden_character(value):
    with pytest.raises(ConfigError, match="control character U\\+"):
        check_value(value, "--experiment")


@pytest.mark.parametrize("value", ["exp", "my experiment", "é-ü/ß_0.1", "日本語", "a=b,c;d", ""])
def test_check_value_passes_ordinary_text_unchanged(value):
    assert check_value(value, "x") is value


@given(st.text())
def test_bad_character_agrees_with_unicode_categories(text):
    """An independent statement of the rule: Cc, Cs, Zl, Zp and the bidi controls, nothing else."""
    bidi = {0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    expect = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") or ord(c) in bidi), None)
    assert bad_character(text) == expect
    if expect is None:
        assert "\n" not in text and "\r" not in text


@given(st.text(alphabet=string.printable))
def test_no_printable_ascii_with_a_line_break_passes(text):
    if any(c in text for c in "\n\r\t\x0b\x0c"):
        with pytest.raises(ConfigError):
            check_value(text, "v")
    else:
        check_value(text, "v")


# ----------------------------------------------------------------------------- text files


@pytest.mark.parametrize("raw, text", [(b"a: 1\n", "a: 1\n"), (b"\xef\xbb\xbfa: 1\r\n", "a: 1\n"),
                                       ("é\n".encode(), "é\n"), (b"", "")])
def test_read_text_reads_utf8_and_drops_the_bom(tmp_path, raw, text):
    (tmp_path / "f").write_bytes(raw)
    assert read_text(tmp_path / "f") == text


@pytest.mark.parametrize("raw, fragment", [
    ("a: 1\n".encode("utf-16"), "UTF-16"),
    ("a: 1\n".encode("utf-16-be"), "NUL"),
    (b"\x80\x81binary", "not UTF-8 text (byte 0 is 0x80)"),
    ("é".encode("latin-1"), "not UTF-8"),
    (b"a\x00b", "NUL"),
])
def test_read_text_refuses_what_is_not_utf8_in_one_sentence_naming_the_file(tmp_path, raw, fragment):
    (tmp_path / "f.yaml").write_bytes(raw)
    with pytest.raises(InputError) as info:
        read_text(tmp_path / "f.yaml", "Config file")
    msg = str(info.value)
    assert fragment in msg and "f.yaml" in msg and "\n" not in msg


def test_read_text_refuses_missing_folder_and_huge(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_text(tmp_path / "nope")
    with pytest.raises(InputError, match="is a folder"):
        read_text(tmp_path)
    (tmp_path / "big").write_bytes(b"x" * 2048)
    with pytest.raises(InputError, match="larger than"):
        read_text(tmp_path / "big", limit=1024)


@given(st.binary(max_size=200))
def test_read_text_either_decodes_or_refuses(raw):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f")
        with open(path, "wb") as fh:
            fh.write(raw)
        try:
            text = read_text(path)
        except InputError as exc:
            assert "\n" not in str(exc)
        else:
            assert raw.removeprefix(b"\xef\xbb\xbf").decode("utf-8").replace("\r\n", "\n") == text


# ----------------------------------------------------------------------------- outputs


def _tree(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_spec_paths_finds_deletion_requests_only():
    assert spec_paths("indices:req.txt", "class:3", None, "random:0.1", " indices:a/b ") == [
        __import__("pathlib").Path("req.txt"), __import__("pathlib").Path("a/b")]


@pytest.mark.parametrize("spell", ["same", "dot", "abs", "symlink", "hardlink", "dotdot"])
def test_an_output_that_is_an_input_is_refused_however_spelled(tmp_path, monkeypatch, spell):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "req.txt").write_text("1\n2\n")
    out = {"same": "req.txt", "dot": "./req.txt", "abs": str(tmp_path / "req.txt"), "symlink": "link.txt",
           "hardlink": "hard.txt", "dotdot": "sub/../req.txt"}[spell]
    os.symlink("req.txt", "link.txt")
    os.link("req.txt", "hard.txt")
    before = _tree(tmp_path)
    with pytest.raises(OutputError, match="also an input"):
        declare(outputs=[("-o", out, False)], specs=["indices:req.txt"])
    assert _tree(tmp_path) == before


def test_two_outputs_on_one_file_are_refused(tmp_path):
    with pytest.raises(OutputError, match="--json and -o are the same path"):
        declare(outputs=[Output("--json", tmp_path / "r"), Output("-o", f"{tmp_path}/./r")])


def test_fifo_device_folder_and_socket_outputs_are_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OutputError, match="is a FIFO"):
        check_output(tmp_path / "fifo")
    with pytest.raises(OutputError, match="is a device"):
        check_output("/dev/null")
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path)
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="must be a folder"):
        check_output(tmp_path / "f", folder=True)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output(tmp_path / "f" / "x.pt")


def test_names_too_long_for_the_file_system_are_refused(tmp_path):
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    with pytest.raises(OutputError, match="longer than"):
        check_output(tmp_path / ("n" * (name_max + 1)))
    with pytest.raises(OutputError, match="too long"):  # fits, but its temporary sibling would not
        check_output(tmp_path / ("n" * (name_max - 5)))
    with pytest.raises(OutputError, match="longer than"):
        check_output(tmp_path / "/".join(["d" * 200] * 25) / "x")
    check_output(tmp_path / ("n" * (name_max - 30)))
    assert list(tmp_path.iterdir()) == []


def test_empty_and_control_character_output_names_are_refused(tmp_path):
    with pytest.raises(OutputError, match="is empty"):
        check_output("", option="--json")
    with pytest.raises(ConfigError, match="control character"):
        check_output(tmp_path / "a\nb")


def test_a_read_only_existing_output_is_refused(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    (tmp_path / "ro").write_text("x")
    os.chmod(tmp_path / "ro", 0o444)
    with pytest.raises(OutputError, match="read-only"):
        check_output(tmp_path / "ro")


# ----------------------------------------------------------------------------- models


def test_models_without_weight_values_or_with_nan_weights_are_refused():
    import torch

    from unlearnbench.core.errors import ModelError
    from unlearnbench.core.foreign import check_model_fits
    from unlearnbench.core.models import create_model

    with torch.device("meta"):
        meta = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    with pytest.raises(ModelError, match="meta device"):
        check_model_fits(meta, 1, 8, 8, 10)
    model = create_model("mlp", 10, 1, 8)
    check_model_fits(model, 1, 8, 8, 10)
    with torch.no_grad():
        next(model.parameters())[0, 0] = float("inf")
    with pytest.raises(ModelError, match="non-finite weights .* in 1 tensor"):
        check_model_fits(model, 1, 8, 8, 10)


def test_read_text_of_a_fifo_without_writer_does_not_hang_and_process_substitution_works(tmp_path):
    os.mkfifo(tmp_path / "p")
    assert read_text(tmp_path / "p") == ""  # nobody writes: empty at once, not a hang
    r, w = os.pipe()  # what `--config <(cat c.yaml)` hands over: /dev/fd/N, a pipe with a writer
    os.write(w, b"epochs: 1\n")
    os.close(w)
    try:
        assert read_text(f"/dev/fd/{r}") == "epochs: 1\n"
    finally:
        os.close(r)
