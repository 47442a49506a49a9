"""action.video.layouts: UCF101 / UCF50 / HMDB51 / folder / CSV readers and their errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from action.video.layouts import detect_layout, read_videos, split_videos, stratified_split
from action.video.synthetic import CLASSES


def test_ucf101_splits_hold_out_whole_groups(tiny_videos: Path) -> None:
    train = read_videos(tiny_videos, "ucf101", 1, "train")
    test = read_videos(tiny_videos, "ucf101", 1, "test")
    assert train.classes == list(CLASSES) and len(train.items) + len(test.items) == 48
    groups = lambda items: {p.stem.split("_g")[1][:2] for p, _ in items}
    assert groups(test.items) == {"01"} and groups(train.items) == {"02", "03"}
    assert all(p.parent.name == CLASSES[label] for p, label in train.items + test.items)


def test_validation_split_holds_out_each_class_and_repeats_with_its_seed(tiny_videos: Path) -> None:
    videos = read_videos(tiny_videos, "ucf101", 1, "train")  # 4 videos per class
    train, val = split_videos(videos, 0.25, seed=0)
    assert sorted(train.items + val.items) == sorted(videos.items) and not set(train.items) & set(val.items)
    assert sorted(label for _, label in val.items) == list(range(len(CLASSES)))  # one of each class's four
    assert split_videos(videos, 0.25, seed=0)[1].items == val.items and split_videos(videos, 0.25, seed=1)[1].items != val.items
    assert split_videos(videos, 0.0, seed=0) == (videos, None)


def _copy(tiny_videos: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_videos, tmp_path / "copy"))


def test_ucf101_errors_name_the_file_and_line(tiny_videos: Path, tmp_path: Path) -> None:
    root = _copy(tiny_videos, tmp_path)
    lists = root / "ucfTrainTestlist"
    (lists / "testlist02.txt").unlink()
    with pytest.raises(ValueError, match="testlist02.txt: split file not found"):
        read_videos(root, "ucf101", 2, "test")
    text = (lists / "classInd.txt").read_text(encoding="utf-8").replace("8 Jump\n", "")
    (lists / "classInd.txt").write_text(text)
    with pytest.raises(ValueError, match="trainlist01.txt, line \\d+: class 'Jump' is not in .*classInd.txt"):
        read_videos(root, "ucf101", 1, "train")
    (lists / "classInd.txt").write_text(text + "8 Jump\n")
    lines = (lists / "trainlist01.txt").read_text(encoding="utf-8").replace("Wave_g02_c01.avi 7", "Wave_g02_c01.avi 3")
    (lists / "trainlist01.txt").write_text(lines)
    with pytest.raises(ValueError, match="label 3 disagrees"):
        read_videos(root, "ucf101", 1, "train")


def test_listed_video_that_is_missing_is_named(tiny_videos: Path, tmp_path: Path) -> None:
    root = _copy(tiny_videos, tmp_path)
    (root / "Wave" / "v_Wave_g01_c01.avi").unlink()
    with pytest.raises(ValueError, match="v_Wave_g01_c01.avi: listed video does not exist"):
        read_videos(root, "ucf101", 1, "test")


def test_folder_layout_stratified_split_ignores_partial_files(tiny_videos: Path, tmp_path: Path) -> None:
    root = _copy(tiny_videos, tmp_path)
    shutil.rmtree(root / "ucfTrainTestlist")
    (root / "Wave" / ".v_Wave_g09_c09.avi.partial-x.avi").write_bytes(b"")
    assert detect_layout(root) == "folder"
    train, test = read_videos(root, subset="train"), read_videos(root, subset="test")
    assert len(train.items) + len(test.items) == 48
    assert set(map(str, train.items)).isdisjoint(map(str, test.items))
    assert np.bincount([label for _, label in test.items]).tolist() == [1] * 8  # round(0.2 * 6) = 1 per class


def test_ucf50_leave_one_group_out(tiny_videos: Path) -> None:
    test = read_videos(tiny_videos, "ucf50", 2, "test")
    assert len(test.items) == 16 and all("_g02_" in p.name for p, _ in test.items)
    assert len(read_videos(tiny_videos, "ucf50", 2, "train").items) == 32


def test_hmdb51_split_flags(tiny_videos: Path, tmp_path: Path) -> None:
    root = _copy(tiny_videos, tmp_path)
    splits = root / "splits"
    splits.mkdir()
    for name in CLASSES:
        videos = sorted(p.name for p in (root / name).iterdir())
        flags = ["2" if "_g01_" in v else ("0" if "_g03_" in v else "1") for v in videos]
        (splits / f"{name}_test_split1.txt").write_text("".join(f"{v} {f}\n" for v, f in zip(videos, flags)))
    assert detect_layout(root) == "ucf101"  # classInd.txt wins; ask for hmdb51 explicitly
    train, test = read_videos(root, "hmdb51", 1, "train"), read_videos(root, "hmdb51", 1, "test")
    assert (len(train.items), len(test.items)) == (16, 16) and train.classes == sorted(CLASSES)
    (splits / "Wave_test_split1.txt").write_text("v_Wave_g01_c01.avi maybe\n")
    with pytest.raises(ValueError, match="Wave_test_split1.txt, line 1: expected '<video> 0\\|1\\|2'"):
        read_videos(root, "hmdb51", 1, "train")


def test_csv_list_with_subset_column(tiny_videos: Path, tmp_path: Path) -> None:
    rows = ["path,label,subset"] + [
        f"{p},{p.parent.name},{'test' if '_g01_' in p.name else 'train'}" for p in sorted(tiny_videos.glob("*/*.avi"))
    ]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    test = read_videos(tmp_path / "list.csv", subset="test")
    assert len(test.items) == 8 and test.classes == sorted(CLASSES)
    (tmp_path / "bad.csv").write_text("file,class\na.avi,x\n")
    with pytest.raises(ValueError, match="bad.csv: expected a CSV header with columns 'path,label'"):
        read_videos(tmp_path / "bad.csv")


def test_stratified_split_keeps_one_per_class_for_training() -> None:
    mask = stratified_split([0, 0, 1, 1, 1, 1, 2], 0.5, seed=1)
    assert mask.tolist().count(True) == 3 and not mask[6]  # class 2 has one sample: it stays in training
