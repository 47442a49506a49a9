"""action.sequences.readers / sequence_formats: every file form reads the same recordings; malformed files are named."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from action.sequences.readers import read_sequences

LENGTHS = (5, 9, 3, 7)
LABELS = ["walk", "run", "walk", "sit"]


def recordings(channels: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=(t, channels)).round(4) for t in LENGTHS]


def write_stacked_npz(path: Path, x: list[np.ndarray], labels: list[str], lengths: list[int] | None = None) -> Path:
    np.savez(path, X=np.concatenate(x), lengths=np.array(lengths or [len(s) for s in x]), y=np.array(labels))
    return path


def write_csv(path: Path, x: list[np.ndarray], labels: list[str]) -> Path:
    rows = ["sample,label," + ",".join(f"c{i}" for i in range(x[0].shape[1]))]
    rows += [f"s{n},{labels[n]}," + ",".join(map(str, step)) for n, s in enumerate(x) for step in s]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_ts(path: Path, x: list[np.ndarray], labels: list[str]) -> Path:
    header = [
        "@problemName test",
        "@timeStamps false",
        "@univariate false",
        f"@dimensions {x[0].shape[1]}",
        "@equalLength false",
        "@classLabel true " + " ".join(sorted(set(labels))),
        "@data",
    ]
    lines = [":".join(",".join(map(str, s[:, c])) for c in range(s.shape[1])) + f":{label}" for s, label in zip(x, labels)]
    path.write_text("\n".join(["# a comment", *header, *lines]) + "\n", encoding="utf-8")
    return path


def write_mat(path: Path, x: list[np.ndarray], labels: list[str]) -> Path:
    cells = np.empty((len(x), 1), dtype=object)
    for i, s in enumerate(x):
        cells[i, 0] = s.T  # MATLAB's C x T
    scipy.io.savemat(path, {"XTrain": cells, "YTrain": np.array(labels, dtype=object).reshape(-1, 1)})
    return path


def write_mat73(path: Path, x: list[np.ndarray], labels: list[float]) -> Path:
    """What MATLAB's save -v7.3 writes for a cell array of C x T doubles and a numeric label row."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        references = []
        for i, s in enumerate(x):
            item = refs.create_dataset(f"r{i}", data=s)  # HDF5 holds MATLAB's C x T column-major: T x C here
            item.attrs["MATLAB_class"] = np.bytes_("double")
            references.append(item.ref)
        cells = f.create_dataset("XTrain", data=np.array(references, dtype=h5py.ref_dtype).reshape(-1, 1))
        cells.attrs["MATLAB_class"] = np.bytes_("cell")
        y = f.create_dataset("YTrain", data=np.asarray(labels, dtype=float).reshape(-1, 1))
        y.attrs["MATLAB_class"] = np.bytes_("double")
    return path


@pytest.mark.parametrize("writer", [write_stacked_npz, write_csv, write_ts, write_mat], ids=["npz", "csv", "ts", "mat"])
def test_every_form_gives_the_same_unequal_length_recordings(tmp_path: Path, writer) -> None:
    x = recordings()
    path = writer(tmp_path / f"data.{writer.__name__.split('_')[-1]}", x, LABELS)
    seqs = read_sequences(path)
    assert seqs.lengths.tolist() == list(LENGTHS) and seqs.channels == 3
    for got, want in zip(seqs.x, x):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert seqs.classes == ["run", "sit", "walk"] and [seqs.classes[i] for i in seqs.y] == LABELS


def test_mat_v73_cell_array_and_numeric_labels(tmp_path: Path) -> None:
    x = recordings(2)
    seqs = read_sequences(write_mat73(tmp_path / "v73.mat", x, [3, 1, 3, 2]))
    assert seqs.lengths.tolist() == list(LENGTHS) and seqs.classes == ["1", "2", "3"]
    np.testing.assert_allclose(seqs.x[1], x[1])


def test_mat_variables_can_be_named(tmp_path: Path) -> None:
    x = recordings()
    path = tmp_path / "two.mat"
    cells = np.empty((len(x), 1), dtype=object)
    for i, s in enumerate(x):
        cells[i, 0] = s.T
    scipy.io.savemat(path, {"A": cells, "B": cells, "labels": np.array([1.0, 2, 1, 2])})
    with pytest.raises(ValueError, match=r"two.mat: cannot tell which variable is the cell array .*--mat-x-var"):
        read_sequences(path)
    assert read_sequences(path, x_var="B").lengths.tolist() == list(LENGTHS)


def test_japanese_vowels_from_the_aeon_wheel() -> None:
    folder = Path(importlib.util.find_spec("aeon").submodule_search_locations[0]) / "datasets" / "data" / "JapaneseVowels"
    train = read_sequences(folder / "JapaneseVowels_TRAIN.ts")
    test = read_sequences(folder / "JapaneseVowels_TEST.ts", classes=train.classes)
    assert (len(train.x), len(test.x), train.channels) == (270, 370, 12)  # MATLAB's example: 270 + 370, 12 features
    assert train.lengths.min() >= 7 and max(train.lengths.max(), test.lengths.max()) <= 29
    assert train.classes == [str(n) for n in range(1, 10)]


def test_lengths_that_do_not_add_up(tmp_path: Path) -> None:
    path = write_stacked_npz(tmp_path / "short.npz", recordings(), LABELS, lengths=[5, 9, 3, 8])
    with pytest.raises(ValueError, match=r"short.npz: lengths add up to 25 steps but X has 24 rows"):
        read_sequences(path)


def test_one_label_per_recording(tmp_path: Path) -> None:
    path = write_stacked_npz(tmp_path / "labels.npz", recordings(), LABELS[:3], lengths=list(LENGTHS))
    with pytest.raises(ValueError, match=r"labels.npz: 4 lengths but 3 labels"):
        read_sequences(path)


def test_channel_counts_that_differ(tmp_path: Path) -> None:
    x = recordings()
    x[2] = x[2][:, :2]
    with pytest.raises(ValueError, match=r"channels.mat: recordings have different channel counts \[2, 3\]"):
        read_sequences(write_mat(tmp_path / "channels.mat", x, LABELS))
    lines = write_ts(tmp_path / "ragged.ts", recordings(), LABELS).read_text().splitlines()
    lines[-1] = lines[-1].replace(":", ",0.5:", 1)  # the first channel of the last recording gets one step more
    (tmp_path / "ragged.ts").write_text("\n".join(lines))
    with pytest.raises(ValueError, match=r"ragged.ts, line \d+: its 3 channels have different lengths \[7, 8\]"):
        read_sequences(tmp_path / "ragged.ts")


def test_nan_steps_are_named(tmp_path: Path) -> None:
    x = recordings()
    x[1][4, 2] = np.nan
    with pytest.raises(ValueError, match=r"nan.csv: recording 1 has 1 NaN/Inf values \(first at step 4, channel 2\)"):
        read_sequences(write_csv(tmp_path / "nan.csv", x, LABELS))


def test_object_arrays_are_refused_with_the_way_out(tmp_path: Path) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.zeros((3, 2)), np.zeros((5, 2))
    np.savez(tmp_path / "pickled.npz", X=ragged, y=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"pickled.npz: .*allow_pickle.*X \(sum of lengths, C\) \+ lengths \(N,\) \+ y \(N,\)"):
        read_sequences(tmp_path / "pickled.npz")


def test_csv_sample_rows_must_stay_together_and_keep_one_label(tmp_path: Path) -> None:
    (tmp_path / "split.csv").write_text("sample,label,a\n1,x,0\n2,y,1\n1,x,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"split.csv, line 4: rows of sample '1' resume after another sample's"):
        read_sequences(tmp_path / "split.csv")
    (tmp_path / "relabel.csv").write_text("sample,label,a\n1,x,0\n1,y,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"relabel.csv, line 3: sample '1' changes label from 'x' to 'y'"):
        read_sequences(tmp_path / "relabel.csv")


def test_labels_outside_the_models_classes(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "new.csv", recordings(), LABELS)
    with pytest.raises(ValueError, match=r"new.csv: labels \['sit'\] are not among the model's classes \['run', 'walk'\]"):
        read_sequences(path, classes=["run", "walk"])


def test_unlabelled_files_read_for_prediction(tmp_path: Path) -> None:
    np.savez(tmp_path / "raw.npz", X=np.concatenate(recordings()), lengths=np.array(LENGTHS))
    with pytest.raises(ValueError, match=r"raw.npz: expected arrays 'X'"):
        read_sequences(tmp_path / "raw.npz")
    seqs = read_sequences(tmp_path / "raw.npz", classes=["a", "b"], labelled=False)
    assert seqs.lengths.tolist() == list(LENGTHS) and (seqs.y == -1).all()


def test_ts_without_data_section(tmp_path: Path) -> None:
    (tmp_path / "head.ts").write_text("@problemName x\n@classLabel true a b\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"head.ts: no '@data' line"):
        read_sequences(tmp_path / "head.ts")
