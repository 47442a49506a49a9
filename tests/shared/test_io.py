import json

import pytest

from shared.io import atomic_path, atomic_write_csv, atomic_write_json, atomic_write_text


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text(encoding="utf-8") == "second"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "good")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text(encoding="utf-8") == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_json_is_strict_and_csv_leaves_missing_cells_empty(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2}})
    assert json.loads((tmp_path / "m.json").read_text(encoding="utf-8")) == {"a": None, "b": [1.0, None], "c": {"d": 2}}
    atomic_write_csv(tmp_path / "h.csv", [{"x": 1, "y": float("nan")}, {"x": 2}], ["x", "y"])
    assert (tmp_path / "h.csv").read_text(encoding="utf-8") == "x,y\n1,\n2,\n"
