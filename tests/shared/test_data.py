import pytest
import torch
from monai.data import Dataset

from shared.data import EpochSampler, make_loader
from shared.options import TrainingOptions


def test_never_keeps_dataset_order():
    sampler = EpochSampler(6, "never")
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        assert list(sampler) == [0, 1, 2, 3, 4, 5]


def test_once_is_one_fixed_permutation():
    sampler = EpochSampler(50, "once", seed=3)
    orders = []
    for epoch in (1, 2, 3):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert orders[0] == orders[1] == orders[2] != list(range(50))
    assert sorted(orders[0]) == list(range(50))


def test_every_epoch_reshuffles_reproducibly():
    a, b = EpochSampler(50, "every-epoch", seed=3), EpochSampler(50, "every-epoch", seed=3)
    a.set_epoch(1)
    first = list(a)
    a.set_epoch(2)
    assert list(a) != first
    b.set_epoch(1)
    assert list(b) == first  # a fresh sampler (a resumed run) sees the same order
    assert list(EpochSampler(50, "every-epoch", seed=4)) != first


def test_skip_applies_to_one_pass_only():
    sampler = EpochSampler(10, "once", seed=1)
    full = sampler.order()
    sampler.skip(4)
    assert list(sampler) == full[4:]
    assert list(sampler) == full


def test_replicas_split_the_data_disjointly():
    shards = [list(EpochSampler(10, "every-epoch", seed=0, num_replicas=3, rank=r)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(10)) and len(flat) == 12  # 2 samples repeated to pad, as DistributedSampler


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 0}, "at least one sample"),
        ({"size": 4, "shuffle": "random"}, "shuffle='random' is invalid"),
        ({"size": 4, "rank": 2, "num_replicas": 2}, r"rank=2 must lie in \[0, num_replicas=2\)"),
    ],
)
def test_sampler_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EpochSampler(**kwargs)


def test_make_loader_batches_and_passes_loaders_through():
    data = Dataset([{"image": torch.tensor([float(i)]), "label": i} for i in range(10)])
    loader = make_loader(data, TrainingOptions(mini_batch_size=4, shuffle="never"), train=True)
    batches = [b["label"].tolist() for b in loader]
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]  # partial last batch kept
    assert make_loader(loader, TrainingOptions(), train=True) is loader
    with pytest.raises(ValueError, match="validation dataset is empty"):
        make_loader(Dataset([]), TrainingOptions(), train=False)


class _SpawnedDataset(Dataset):
    worker_start_method = "spawn"


def test_make_loader_starts_workers_as_the_dataset_asks():
    """A dataset that cannot be forked (``ClipDataset``: FFmpeg's threads) gets spawned workers; others keep the
    platform's default (fork on Linux, so medseg's RAM cache is shared), and no workers need no context."""
    items = [{"image": torch.zeros(1), "label": i} for i in range(4)]
    options = TrainingOptions(mini_batch_size=2)
    spawned = make_loader(_SpawnedDataset(items), options, train=True, num_workers=2)
    assert spawned.multiprocessing_context.get_start_method() == "spawn"
    assert make_loader(Dataset(items), options, train=True, num_workers=2).multiprocessing_context is None
    assert make_loader(_SpawnedDataset(items), options, train=True).multiprocessing_context is None
    asked = make_loader(_SpawnedDataset(items), options, train=True, num_workers=2, multiprocessing_context="forkserver")
    assert asked.multiprocessing_context.get_start_method() == "forkserver"  # the caller's choice wins


def test_random_transforms_follow_the_options_seed():
    from monai.transforms import Compose, RandSpatialCropd

    def patches(seed):
        items = [{"image": torch.arange(64.0).reshape(1, 8, 8)} for _ in range(6)]
        data = Dataset(items, Compose([RandSpatialCropd(keys="image", roi_size=(3, 3), random_size=False)]))
        loader = make_loader(data, TrainingOptions(mini_batch_size=6, shuffle="never", seed=seed), train=True)
        return next(iter(loader))["image"]

    assert torch.equal(patches(0), patches(0))  # same seed: the same random crops (MATLAB's rng default)
    assert not torch.equal(patches(0), patches(1))


def epoch_draws(data, workers: int, epochs=(1, 2), seed: int = 1, batch: int = 2) -> list[list]:
    """What a training loader yields in each of ``epochs``, driven as the engine drives it (sampler epoch, then the
    dataset's) with ``workers`` persistent worker processes: one list of batches per epoch."""
    from shared.data import set_data_epoch

    options = TrainingOptions(mini_batch_size=batch, shuffle="never", seed=seed)
    loader = make_loader(data, options, train=True, num_workers=workers, persistent_workers=workers > 0)
    out = []
    for epoch in epochs:
        loader.sampler.set_epoch(epoch)
        set_data_epoch(loader.dataset, epoch)
        out.append(list(loader))
    return out


def test_epoch_index_is_an_int_that_keeps_its_epoch_through_pickling():
    import pickle

    from shared.data import EpochIndex

    index = pickle.loads(pickle.dumps(EpochIndex(7, epoch=3)))
    assert index == 7 and index.epoch == 3 and [10, 11, 12, 13, 14, 15, 16, 17][index] == 17
    sampler = EpochSampler(4, "never")
    sampler.set_epoch(5)
    assert [i.epoch for i in sampler] == [5, 5, 5, 5]


def test_monai_random_transforms_draw_per_epoch_in_persistent_workers():
    """A MONAI dataset with a random transform: new draws each epoch with 2 persistent workers, the same as 0 workers."""
    from monai.transforms import Compose, RandSpatialCropd

    images = [{"image": torch.arange(64, dtype=torch.float32).reshape(1, 64) + 1000 * k} for k in range(4)]
    data = Dataset(images, Compose([RandSpatialCropd("image", roi_size=(4,), random_size=False)]))
    starts = lambda run: [[int(b["image"][i, 0, 0]) % 1000 for b in epoch for i in range(len(b["image"]))] for epoch in run]
    two = starts(epoch_draws(data, workers=2))
    assert two[0] != two[1]  # epoch 2 draws anew in the workers
    assert two == starts(epoch_draws(data, workers=0))  # what one process draws: repeatable, whatever the worker count
