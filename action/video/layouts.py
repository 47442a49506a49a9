"""Dataset layouts -> labelled video lists: UCF101, UCF50, HMDB51, one folder per class, CSV.

Each reader returns a :class:`VideoList` (paths, integer labels, class names). The
validation hold-out of training is :func:`split_videos` / :func:`split_sequences`. Readers check what they
read: a missing split file, a class absent from ``classInd.txt``, a label index that
disagrees with it, or a listed video that does not exist is a ``ValueError`` naming the
file (and line); videos are never dropped silently.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SUFFIXES = frozenset({".avi", ".mp4", ".mkv", ".mov", ".webm", ".mpg", ".mpeg", ".m4v", ".ogv", ".3gp"})
LAYOUTS = ("auto", "ucf101", "ucf50", "hmdb51", "folder", "csv")
SUBSETS = ("train", "test", "all")
_GROUP = re.compile(r"_g(\d+)_c\d+", re.IGNORECASE)
#: HMDB51's tags after the source film and the action: body part, camera motion, people, viewpoint, quality, clip number
_HMDB_TAGS = re.compile(r"_[fhlou]_(cm|nm)_np\d+_(ba|fr|le|ri)_(bad|goo|med)_\d+$", re.IGNORECASE)


@dataclasses.dataclass
class VideoList:
    """Videos with integer labels into ``classes`` (``items[i] = (path, label)``).

    ``groups``: the group of each video (UCF's ``gNN``: actor and scene; HMDB51's source film), or ``None`` when
    the layout has none; the validation hold-out keeps each group on one side (:mod:`action.splits`).
    """

    items: list[tuple[Path, int]]
    classes: list[str]
    groups: list[str] | None = None

    def subset(self, keep: Any) -> VideoList:
        """The videos where the boolean ``keep`` ``(N,)`` is true (groups kept alongside)."""
        items = [item for item, k in zip(self.items, keep) if k]
        groups = [g for g, k in zip(self.groups, keep) if k] if self.groups is not None else None
        return VideoList(items, self.classes, groups)

    def check_files(self) -> VideoList:
        """Raise ``ValueError`` naming the first listed video that does not exist."""
        for path, _ in self.items:
            if not path.is_file():
                raise ValueError(f"{path}: listed video does not exist.")
        return self


def ucf_groups(paths: list[Path]) -> list[str] | None:
    """The UCF ``gNN`` group of every clip (``v_Run_g08_c01.avi`` -> ``g08``), or ``None`` unless every name has one."""
    found = [_GROUP.search(p.stem) for p in paths]
    return [f"g{int(m.group(1)):02d}" for m in found] if paths and all(found) else None


def hmdb_groups(paths: list[Path], class_names: list[str]) -> list[str] | None:
    """HMDB51's source film of every clip (``April_09_brush_hair_u_nm_np1_ba_goo_0.avi`` -> ``April_09``), or ``None``
    unless every name carries HMDB51's tags."""
    groups = []
    for path, name in zip(paths, class_names):
        stem = _HMDB_TAGS.sub("", path.stem)
        if stem == path.stem:
            return None
        groups.append(stem[: -len(name) - 1] if stem.lower().endswith("_" + name.lower()) else stem)
    return groups or None


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise ValueError(f"{path}: split file not found (expected by the layout).")
    return [(n, line.strip()) for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]


def _class_folders(root: Path) -> list[str]:
    return sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".") and _videos(d))


def _videos(folder: Path) -> list[Path]:
    return sorted(
        f for f in folder.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES and not f.name.startswith(".")
    )  # skip hidden and partial files


def _ucf_list_dir(root: Path) -> Path:
    for candidate in (root / "ucfTrainTestlist", root):
        if (candidate / "classInd.txt").is_file():
            return candidate
    raise ValueError(f"{root}: classInd.txt not found (looked in {root / 'ucfTrainTestlist'} and {root}); expected the UCF101 layout.")


def read_ucf101(root: str | Path, split: int = 1, subset: str = "train") -> VideoList:
    """UCF101: ``classInd.txt`` + ``trainlist0N.txt`` / ``testlist0N.txt`` (N = ``split``, 1-3)."""
    root = Path(root)
    lists = _ucf_list_dir(root)
    index_file = lists / "classInd.txt"
    classes: list[str] = []
    for n, line in _lines(index_file):
        number, _, name = line.partition(" ")
        if not number.isdigit() or int(number) != len(classes) + 1 or not name:
            raise ValueError(f"{index_file}, line {n}: expected '<index> <ClassName>' with index {len(classes) + 1}, got {line!r}.")
        classes.append(name.strip())
    lookup = {name.lower(): i for i, name in enumerate(classes)}
    subsets = ("train", "test") if subset == "all" else (subset,)
    items = []
    for part in subsets:
        list_file = lists / f"{part}list{split:02d}.txt"
        for n, line in _lines(list_file):
            relative, _, number = line.partition(" ")
            folder = relative.split("/")[0]
            if folder.lower() not in lookup:
                raise ValueError(f"{list_file}, line {n}: class {folder!r} is not in {index_file}.")
            label = lookup[folder.lower()]
            if number.strip() and int(number) != label + 1:
                raise ValueError(f"{list_file}, line {n}: label {number.strip()} disagrees with {index_file} ({folder} is {label + 1}).")
            items.append((root / relative, label))
    return VideoList(items, classes, ucf_groups([p for p, _ in items])).check_files()


def read_ucf50(root: str | Path, fold: int = 1, subset: str = "train") -> VideoList:
    """UCF50: one folder per class, clips named ``*_gNN_cMM``; leave-one-group-out, group ``fold`` is the test set."""
    root = Path(root)
    classes = _class_folders(root)
    items = []
    for label, name in enumerate(classes):
        for path in _videos(root / name):
            match = _GROUP.search(path.stem)
            if match is None:
                raise ValueError(f"{path}: UCF50 clip names need a group tag '_gNN_cMM'.")
            is_test = int(match.group(1)) == fold
            if subset == "all" or is_test == (subset == "test"):
                items.append((path, label))
    return VideoList(items, classes, ucf_groups([p for p, _ in items]))


def read_hmdb51(root: str | Path, split: int = 1, subset: str = "train", split_dir: str | Path | None = None) -> VideoList:
    """HMDB51: ``<class>_test_split<N>.txt`` files listing ``video 0|1|2`` (1 train, 2 test, 0 unused)."""
    root = Path(root)
    split_dir = (
        Path(split_dir)
        if split_dir
        else next(
            (d for d in (root / "testTrainMulti_7030_splits", root / "splits", root) if d.is_dir() and any(d.glob("*_test_split*.txt"))),
            root,
        )
    )
    files = sorted(split_dir.glob(f"*_test_split{split}.txt"))
    if not files:
        raise ValueError(f"{split_dir}: no '*_test_split{split}.txt' files; expected the HMDB51 split layout.")
    classes = [f.name[: -len(f"_test_split{split}.txt")] for f in files]
    wanted = {"train": {"1"}, "test": {"2"}, "all": {"1", "2"}}[subset]
    items = []
    for label, (name, list_file) in enumerate(zip(classes, files)):
        for n, line in _lines(list_file):
            video, _, flag = line.rpartition(" ")
            if flag not in {"0", "1", "2"}:
                raise ValueError(f"{list_file}, line {n}: expected '<video> 0|1|2', got {line!r}.")
            if flag in wanted:
                items.append((root / name / video, label))
    groups = hmdb_groups([p for p, _ in items], [classes[label] for _, label in items])
    return VideoList(items, classes, groups).check_files()


def stratified_split(labels: list[int], test_fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean test mask taking ``round(test_fraction * n_c)`` (at least 1 when n_c > 1) of each class."""
    labels_arr = np.asarray(labels)
    mask = np.zeros(len(labels_arr), dtype=bool)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels_arr):
        members = np.flatnonzero(labels_arr == label)
        count = min(len(members) - 1, max(1, round(test_fraction * len(members)))) if test_fraction > 0 else 0
        mask[rng.permutation(members)[:count]] = True
    return mask


def split_videos(videos: VideoList, val_fraction: float, seed: int) -> tuple[VideoList, VideoList | None, str]:
    """``(training, validation, report)``: whole groups held out when the videos have them, else a stratified share
    (:func:`action.splits.hold_out`; validation ``None`` for 0); ``report`` says what was asked and what was held out."""
    from action.splits import hold_out

    split = hold_out([label for _, label in videos.items], videos.groups, val_fraction, seed, "videos")
    if not split.val.any():
        return videos, None, split.report
    return videos.subset(~split.val), videos.subset(split.val), split.report


def split_sequences(sequences: Any, val_fraction: float, seed: int) -> tuple[Any, Any | None, str]:
    """The same split for :class:`action.sequences.readers.Sequences` (its ``groups``: subjects, when the file has them)."""
    from action.splits import hold_out

    split = hold_out(sequences.y.tolist(), getattr(sequences, "groups", None), val_fraction, seed, "recordings")
    if not split.val.any():
        return sequences, None, split.report
    return sequences.subset(~split.val), sequences.subset(split.val), split.report


def _subset(
    items: list[tuple[Path, int]], classes: list[str], subset: str, test_fraction: float, seed: int, groups: list[str] | None = None
) -> VideoList:
    videos = VideoList(items, classes, groups)
    if subset == "all":
        return videos
    test = stratified_split([label for _, label in items], test_fraction, seed)
    return videos.subset(test if subset == "test" else ~test)


def read_folder(root: str | Path, subset: str = "all", test_fraction: float = 0.2, seed: int = 0) -> VideoList:
    """One folder per class (sorted names = label order); ``train``/``test`` is a stratified split."""
    root = Path(root)
    classes = _class_folders(root)
    if not classes:
        raise ValueError(f"{root}: no class folders containing videos ({', '.join(sorted(VIDEO_SUFFIXES))}).")
    items = [(path, label) for label, name in enumerate(classes) for path in _videos(root / name)]
    return _subset(items, classes, subset, test_fraction, seed, ucf_groups([p for p, _ in items]))


def read_csv(path: str | Path, subset: str = "all", test_fraction: float = 0.2, seed: int = 0) -> VideoList:
    """CSV with columns ``path,label`` (and optionally ``subset`` = train/test, ``group`` = actor/scene/subject, which the
    validation hold-out keeps on one side); relative paths are from the CSV's folder."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise ValueError(f"{path}: expected a CSV header with columns 'path,label' (optional 'subset').")
    classes = sorted({row["label"] for row in rows})
    lookup = {name: i for i, name in enumerate(classes)}
    items = [((path.parent / row["path"]), lookup[row["label"]]) for row in rows]
    groups = [row["group"].strip() for row in rows] if "group" in rows[0] else ucf_groups([p for p, _ in items])
    if "subset" in rows[0] and subset != "all":
        keep = np.array([row["subset"].strip().lower() == subset for row in rows])
        return VideoList(items, classes, groups).subset(keep).check_files()
    return _subset(items, classes, subset, test_fraction, seed, groups).check_files()


def detect_layout(data: str | Path) -> str:
    """Guess the layout of ``data`` (a CSV file or a dataset folder)."""
    data = Path(data)
    if data.is_file():
        return "csv"
    if not data.is_dir():
        raise ValueError(f"{data}: no such dataset folder or CSV file.")
    if (data / "classInd.txt").is_file() or (data / "ucfTrainTestlist" / "classInd.txt").is_file():
        return "ucf101"
    if any(data.glob("*_test_split1.txt")) or any(data.glob("*/*_test_split1.txt")):
        return "hmdb51"
    return "folder"


def read_videos(
    data: str | Path, layout: str = "auto", split: int = 1, subset: str = "train", test_fraction: float = 0.2, seed: int = 0
) -> VideoList:
    """Read ``data`` with ``layout`` (see :data:`LAYOUTS`); ``split`` is the UCF101/HMDB51 split or the UCF50 group."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}; expected one of {LAYOUTS}.")
    if subset not in SUBSETS:
        raise ValueError(f"subset={subset!r}; expected one of {SUBSETS}.")
    layout = detect_layout(data) if layout == "auto" else layout
    if layout == "ucf101":
        return read_ucf101(data, split, subset)
    if layout == "ucf50":
        return read_ucf50(data, split, subset)
    if layout == "hmdb51":
        return read_hmdb51(data, split, subset)
    if layout == "csv":
        return read_csv(data, subset, test_fraction, seed)
    return read_folder(data, subset, test_fraction, seed)
