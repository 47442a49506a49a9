"""The shared engine under PyTorch DDP: 2 real processes with gloo on this CPU machine."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.data import EpochSampler, ShardSampler
from shared.distributed import free_port
from shared.engine import build_evaluator
from shared.ignite_metrics import confusion_metric
from shared.options import TrainingOptions
from tests.shared.ddp_run import Indexed, build

ROOT = Path(__file__).resolve().parents[2]


def test_samplers_shard_disjointly() -> None:
    for epoch in (1, 2):
        shards = []
        for rank in (0, 1):
            sampler = EpochSampler(10, "every-epoch", seed=3, num_replicas=2, rank=rank)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
        assert set(shards[0]).isdisjoint(shards[1]) and sorted(shards[0] + shards[1]) == list(range(10))
    assert list(ShardSampler(7, 2, 0)) + list(ShardSampler(7, 2, 1)) == [0, 2, 4, 6, 1, 3, 5]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 2-process run, started while something else listens on ignite's default port 2222."""
    out = tmp_path_factory.mktemp("ddp")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        try:
            squatter.bind(("127.0.0.1", 2222))
            squatter.listen()
        except OSError:  # already taken by someone else: the property under test holds the same
            pass
        done = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "shared" / "ddp_run.py"), str(out), "2"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return out


def test_free_port_can_be_listened_on() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", free_port()))
        probe.listen()


def test_each_rank_trains_a_disjoint_half_and_ends_with_the_same_weights(ddp_run: Path) -> None:
    ranks = [json.loads((ddp_run / f"rank{r}.json").read_text(encoding="utf-8")) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    for epoch in ("1", "2"):
        a, b = ranks[0]["seen"][epoch], ranks[1]["seen"][epoch]
        assert len(a) == len(b) == 48 and set(a).isdisjoint(b) and sorted(a + b) == list(range(96))
    assert ranks[0]["seen"]["1"] != ranks[0]["seen"]["2"]  # reshuffled per epoch (set_epoch)
    w0, w1 = (torch.load(ddp_run / f"rank{r}_weights.pt", weights_only=True) for r in (0, 1))
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], rtol=0, atol=0)


def test_reduced_metrics_equal_a_single_process_evaluation(ddp_run: Path) -> None:
    from shared.demo import SequenceClassifier

    network = SequenceClassifier(3, 4)
    network.load_state_dict(torch.load(ddp_run / "rank0_weights.pt", weights_only=True))
    evaluator = build_evaluator(
        network,
        Indexed(30, 2),
        TrainingOptions(mini_batch_size=8, verbose=False),
        {"accuracy": confusion_metric("accuracy", 4), "f1": confusion_metric("f1", 4)},
        "accuracy",
        loss_function=torch.nn.CrossEntropyLoss(),
    )
    evaluator.run()
    reduced = json.loads((ddp_run / "rank0.json").read_text(encoding="utf-8"))["val"]
    for key in ("accuracy", "f1", "loss"):
        assert reduced[key] == pytest.approx(float(evaluator.state.metrics[key]), abs=1e-6), key


def test_one_set_of_outputs_and_a_single_process_resume(ddp_run: Path) -> None:
    names = sorted(p.name for p in ddp_run.iterdir() if not p.name.startswith("rank"))
    assert names == ["checkpoints", "history.csv", "history.json", "model.pt", "training_options.json", "training_progress.png"]
    history = json.loads((ddp_run / "history.json").read_text(encoding="utf-8"))["rows"]
    assert history[-1]["iteration"] == 12  # 2 epochs x 48 samples per rank / batch 8
    trainer = build(ddp_run, epochs=3, resume=True)  # a DDP checkpoint, resumed without DDP
    assert trainer.state.epoch == 2 and trainer.state.iteration == 2 * 12  # epochs done, counted in this run's 12 iterations/epoch
    trainer.run()
    assert trainer.state.epoch == 3 and trainer.state.iteration == 3 * 12
    # and back: the single-process checkpoint resumed by 2 processes (6 iterations per epoch each)
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "shared" / "ddp_run.py"), str(ddp_run), "2", "4", "resume"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    rows = json.loads((ddp_run / "history.json").read_text(encoding="utf-8"))["rows"]
    assert rows[-1]["epoch"] == 4 and rows[-1]["iteration"] == 4 * 6
    assert json.loads((ddp_run / "rank1.json").read_text(encoding="utf-8"))["seen"].keys() == {"4"}  # only epoch 4 was trained


def test_the_group_backend_follows_the_device() -> None:
    """One rule (shared.devices.backend_for): --device cpu is gloo whatever GPUs the machine has (it once took nccl
    whenever CUDA existed)."""
    from shared.devices import DeviceError
    from shared.distributed import group_backend

    assert group_backend("cpu", 2) == "gloo"
    assert group_backend("auto", 2) == ("nccl" if torch.cuda.is_available() and torch.cuda.device_count() >= 2 else "gloo")
    if torch.cuda.is_available():
        assert group_backend("cpu", 64) == "gloo"
        with pytest.raises(DeviceError, match=r"64 processes on device 'cuda' need 64 GPUs"):
            group_backend("cuda", 64)
    else:
        with pytest.raises(DeviceError, match="no CUDA device is available here"):
            group_backend("cuda", 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (a CPU run on a GPU machine)")
def test_cpu_training_on_a_gpu_machine_uses_gloo(tmp_path: Path) -> None:
    """Two processes with --device cpu on a machine with CUDA: the group is gloo and training runs on the CPU."""
    from types import SimpleNamespace

    from shared.distributed import run_parallel

    run_parallel(_report_backend, SimpleNamespace(device="cpu", out=str(tmp_path)), 2)
    assert {(tmp_path / f"backend{r}.txt").read_text(encoding="utf-8") for r in (0, 1)} == {"gloo"}


def _report_backend(local_rank: int, args) -> None:
    import torch.distributed as dist

    Path(args.out, f"backend{local_rank}.txt").write_text(dist.get_backend(), encoding="utf-8")
