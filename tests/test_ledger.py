"""The one JSONL ledger every run writes (`jaxviz.ledger`): torn lines cut and skipped, NaN refused
where a result must be finite, appends durable and named in their errors."""

import json
import math

import pytest

from jaxviz import ledger


def test_read_skips_torn_and_non_object_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n{"b": 2\n"text"\n{"c": 3}\n{"d": ')
    assert list(ledger.read(path)) == [{"a": 1}, {"c": 3}]
    assert list(ledger.read(tmp_path / "missing.jsonl")) == []


@pytest.mark.parametrize("tail", ["", '{"torn": ', "x" * 200_000], ids=["whole", "torn", "torn-over-64KiB"])
def test_cut_torn_line_keeps_every_whole_line(tmp_path, tail):
    path = tmp_path / "results.jsonl"
    whole = "".join(json.dumps({"i": i, "pad": "y" * 1000}) + "\n" for i in range(100))  # ~100 KB
    path.write_text(whole + tail)
    ledger.cut_torn_line(path)
    assert path.read_text() == whole
    with open(path, "a", encoding="utf-8") as f:
        ledger.append(f, [{"i": 100}])
    assert [r["i"] for r in ledger.read(path)] == list(range(101))


def test_cut_torn_line_of_a_file_without_a_newline_empties_it(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"never": "finished"')
    ledger.cut_torn_line(path)
    assert path.read_bytes() == b""
    ledger.cut_torn_line(tmp_path / "missing.jsonl")  # nothing to cut
    assert not (tmp_path / "missing.jsonl").exists()


def test_append_refuses_nan_unless_allowed_and_writes_nothing_then(tmp_path):
    path = tmp_path / "results.jsonl"
    with open(path, "a", encoding="utf-8") as f:
        ledger.append(f, [{"p": 0.5}])
        with pytest.raises(ValueError):
            ledger.append(f, [{"p": 0.25}, {"p": float("nan")}])
        ledger.append(f, [{"p": float("nan")}], allow_nan=True)  # an undefined metric
    records = list(ledger.read(path))
    assert records[0] == {"p": 0.5} and len(records) == 2 and math.isnan(records[1]["p"])


def test_append_error_names_the_file(tmp_path):
    class Full:  # a disk that fills up: the OSError has no file name of its own
        name = str(tmp_path / "results.jsonl")

        def write(self, text):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="results.jsonl"):
        ledger.append(Full(), [{"a": 1}])
