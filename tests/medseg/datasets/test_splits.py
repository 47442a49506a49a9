"""Cross-validation folds: made once by case, saved as nnU-Net's splits file, read back, editable, checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.datasets.splits import FoldError, case_id, fold_splits, make_splits, read_splits, split_cases

IDS = [f"case_{i:03d}" for i in range(23)]


@pytest.fixture(scope="module")
def six_cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's generator with 6 training cases (5 folds need at least 5)."""
    from medseg.datasets.synthetic import make_dataset

    return make_dataset(tmp_path_factory.mktemp("six"), n_train=6, n_test=0, seed=5).parent


def test_every_case_validates_in_exactly_one_fold_and_the_split_is_stable() -> None:
    splits = make_splits(IDS)
    assert len(splits) == 5
    vals = [set(f["val"]) for f in splits]
    assert sorted(i for v in vals for i in v) == sorted(IDS)  # each case in one validation fold
    assert {len(v) for v in vals} <= {4, 5}  # sizes differ by at most one
    for fold in splits:
        assert set(fold["train"]) == set(IDS) - set(fold["val"])
    assert make_splits(list(reversed(IDS))) == splits  # the order cases are listed in does not matter
    assert make_splits(IDS, seed=1) != splits


def test_the_file_is_written_once_then_read_and_a_users_edit_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    first = fold_splits(path, IDS)
    assert json.loads(path.read_text(encoding="utf-8")) == first
    edited = json.loads(path.read_text(encoding="utf-8"))
    moved = edited[0]["val"].pop()
    edited[0]["train"].append(moved)
    path.write_text(json.dumps(edited), encoding="utf-8")
    assert fold_splits(path, IDS) == edited  # not regenerated


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "not a readable splits file"),
        ('{"train": []}', "expected a list of"),
        ('[{"train": ["case_000"], "val": ["nobody"]}]', "names cases the dataset does not have: \\['nobody'\\]"),
        ('[{"train": ["case_000"], "val": ["case_000"]}]', "none of them also in its training list"),
    ],
)
def test_a_bad_splits_file_is_named_with_the_reason(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "splits.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(FoldError, match=f"{path}: .*{reason}"):
        read_splits(path, IDS)


def test_split_cases_gives_the_folds_cases_and_refuses_a_fold_that_cannot_exist(six_cases: Path, tmp_path: Path) -> None:
    path = tmp_path / "splits.json"
    with pytest.raises(FoldError, match="fold 5: .* will have folds 0 to 4"):
        split_cases(six_cases, fold=5, splits_file=path, check=False)
    assert not path.exists()  # nothing written for a bad fold
    train, val = split_cases(six_cases, fold=1, splits_file=path, check=False)
    saved = json.loads(path.read_text(encoding="utf-8"))[1]
    assert sorted(case_id(i) for i in val) == saved["val"] and sorted(case_id(i) for i in train) == saved["train"]


def test_the_bundle_trains_fold_k_into_its_own_folder(six_cases: Path, tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    from medact_bundles import init_bundle

    bundle = init_bundle("vnet_seg", tmp_path / "b")
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser.update({"bundle_root": str(bundle), "dataset_dir": str(six_cases), "fold": 2})
    assert parser.get_parsed_content("output_dir") == f"{bundle}/models/fold_2"
    assert parser.get_parsed_content("options").checkpoint_path == f"{bundle}/models/fold_2/checkpoints"
    _, val = parser.get_parsed_content("split")
    saved = json.loads((bundle / "splits.json").read_text(encoding="utf-8"))[2]
    assert sorted(case_id(i) for i in val) == saved["val"]


def test_fewer_cases_than_folds_is_one_clear_error(demo_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(FoldError, match="4 training cases cannot make 5 folds"):
        split_cases(demo_dataset, fold=0, splits_file=tmp_path / "splits.json", check=False)
    assert not (tmp_path / "splits.json").exists()
