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


def test_validation_holds_out_whole_groups_and_repeats_with_its_seed(tiny_videos: Path) -> None:
    """UCF101's training split (groups 2 and 3 here): validation takes a whole group, never half of one."""
    videos = read_videos(tiny_videos, "ucf101", 1, "train")  # 4 videos per class, 2 groups
    assert sorted(set(videos.groups)) == ["g02", "g03"]
    train, val, report = split_videos(videos, 0.25, seed=0)
    assert sorted(train.items + val.items) == sorted(videos.items) and not set(train.items) & set(val.items)
    assert len(set(val.groups)) == 1 and not set(val.groups) & set(train.groups)  # no actor on both sides
    assert sorted({label for _, label in val.items}) == list(range(len(CLASSES)))  # a UCF group holds every class
    assert "asked 25%, held out 50%" in report and f"whole groups {val.groups[0]} (1 of 2" in report  # the data cannot do 25%: said
    assert split_videos(videos, 0.25, seed=0)[1].items == val.items
    assert {split_videos(videos, 0.25, seed=s)[1].groups[0] for s in range(6)} == {"g02", "g03"}  # the seed picks the group
    assert split_videos(videos, 0.0, seed=0)[:2] == (videos, None)


def test_videos_without_groups_are_stratified_and_the_asked_share_is_kept(tmp_path: Path) -> None:
    """16 videos of 8 classes at 0.1: 2 held out (10% asked, 12% taken), not one per class (8, 50%) as before."""
    from action.splits import hold_out

    labels = [c for c in range(8) for _ in range(2)]
    split = hold_out(labels, None, 0.1, seed=0)
    assert int(split.val.sum()) == 2 and "asked 10%, held out 12%" in split.report and "have no validation" in split.report
    split = hold_out(labels, None, 0.5, seed=0)
    assert int(split.val.sum()) == 8 and sorted(np.asarray(labels)[split.val].tolist()) == list(range(8))
    one = hold_out(labels, ["only"] * 16, 0.25, seed=0)
    assert int(one.val.sum()) == 4 and "one group only" in one.report


def test_hmdb51_and_csv_groups() -> None:
    from action.video.layouts import hmdb_groups

    names = [
        "April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
        "April_09_brush_hair_u_nm_np1_ba_goo_1.avi",
        "Aussie_Brunch_eat_h_nm_np1_fr_med_3.avi",
    ]
    assert hmdb_groups([Path(n) for n in names], ["brush_hair", "brush_hair", "eat"]) == ["April_09", "April_09", "Aussie_Brunch"]
    assert hmdb_groups([Path("clip.avi")], ["eat"]) is None


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


def test_csv_group_column_is_read(tiny_videos: Path, tmp_path: Path) -> None:
    videos = read_videos(tiny_videos, "ucf101", 1, "all")
    rows = [f"{p.relative_to(tiny_videos)},{videos.classes[label]},{'s' + str(i % 3)}" for i, (p, label) in enumerate(videos.items)]
    (tiny_videos / "list.csv").write_text("path,label,group\n" + "\n".join(rows) + "\n", encoding="utf-8")
    try:
        listed = read_videos(tiny_videos / "list.csv", "csv", subset="all")
    finally:
        (tiny_videos / "list.csv").unlink()
    assert sorted(set(listed.groups)) == ["s0", "s1", "s2"]
    _, val, report = split_videos(listed, 0.3, seed=0)
    assert len(set(val.groups)) == 1 and "whole groups" in report


def test_stratified_split_keeps_one_per_class_for_training() -> None:
    mask = stratified_split([0, 0, 1, 1, 1, 1, 2], 0.5, seed=1)
    assert mask.tolist().count(True) == 3 and not mask[6]  # class 2 has one sample: it stays in training
