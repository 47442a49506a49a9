"""Devices and precisions: names, resolution, autocast in the engine; CUDA cases run only where CUDA is."""

import pytest
import torch

from shared import devices
from shared.devices import DeviceError
from shared.engine import Placement, build_trainer, seed_everything
from shared.ignite_metrics import confusion_metric
from shared.options import TrainingOptions
from tests.shared.conftest import TinyNet

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
without_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("auto", "auto"),
        ("CPU", "cpu"),
        ("cuda", "cuda"),
        ("cuda:1", "cuda:1"),
        ("gpu", "cuda"),
        ("multi-gpu", "cuda"),
        ("parallel", "auto"),
    ],
)
def test_device_names_and_matlabs_execution_environments(given, name):
    assert devices.check_device_name(given) == name


@pytest.mark.parametrize("bad", ["tpu", "cuda:", "cuda:x", "mps0", ""])
def test_unknown_device_names_are_refused(bad):
    with pytest.raises(DeviceError, match=r"is not one of auto, cpu, cuda, cuda:N"):
        devices.check_device_name(bad)


@without_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "gpu", "multi-gpu"])
def test_cuda_without_cuda_is_one_clear_error(name):
    with pytest.raises(DeviceError, match=r"no CUDA device is available here .* use --device cpu or auto"):
        devices.resolve_device(name)
    assert devices.resolve_device("auto").type == "cpu"
    assert devices.backend_for("auto") == "gloo"


@needs_cuda
def test_auto_picks_cuda_when_present_and_a_missing_index_is_refused():
    assert devices.resolve_device("auto").type == "cuda"
    with pytest.raises(DeviceError, match="CUDA device"):
        devices.resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_precisions_on_the_cpu():
    cpu = torch.device("cpu")
    assert devices.resolve_precision("fp32", cpu) is None
    assert devices.resolve_precision("bf16", cpu) is torch.bfloat16  # asked for: honoured, even where slow
    expected = torch.bfloat16 if devices.cpu_bf16_is_faster() else None  # auto: the probe decides
    assert devices.resolve_precision("auto", cpu) is expected
    with pytest.raises(DeviceError, match="'fp16' needs a CUDA device"):
        devices.resolve_precision("fp16", cpu)
    with pytest.raises(DeviceError, match="is not one of fp32, bf16, fp16, auto"):
        devices.check_precision_name("fp8")


def test_cpu_probe_times_both_precisions():
    fp32, bf16 = devices.cpu_bf16_probe(repeats=1)
    assert 0 < fp32 < 5 and 0 < bf16 < 60


def test_autocast_inferer_runs_the_forward_in_bf16_and_returns_fp32():
    seen = []
    net = torch.nn.Linear(4, 3)
    net.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    inferer = devices.AutocastInferer(None, torch.device("cpu"), torch.bfloat16)
    x = torch.randn(5, 4)
    out = inferer(x, net)
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    assert torch.allclose(out, net(x), atol=0.05)  # bf16 keeps ~3 significant digits


def test_placement_on_the_cpu_autocasts_through_the_inferer_not_monais_cuda_amp():
    fp32 = Placement.of(TrainingOptions(execution_environment="cpu"))
    assert fp32.engine_kwargs(None) == {"device": torch.device("cpu"), "non_blocking": False, "inferer": None}
    assert fp32.loader_kwargs(0) == {"pin_memory": False, "persistent_workers": False}
    assert fp32.loader_kwargs(2)["persistent_workers"]
    bf16 = Placement.of(TrainingOptions(execution_environment="cpu", precision="bf16")).engine_kwargs(None)
    assert isinstance(bf16["inferer"], devices.AutocastInferer) and "amp" not in bf16


def test_cudnn_benchmark_is_on_unless_determinism_is_asked_for():
    seed_everything(0)
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    seed_everything(0, deterministic=True)
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
    seed_everything(0)


def _train(train_data, val_data, **options):
    opts = TrainingOptions(max_epochs=2, mini_batch_size=16, validation_frequency=3, initial_learn_rate=0.01, verbose=False, **options)
    metrics = {"accuracy": confusion_metric("accuracy", 3)}
    trainer = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), opts, train_data, val_data, metrics, "accuracy")
    dtypes = []
    trainer.network.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    trainer.run()
    return trainer, dtypes


def test_training_at_bf16_on_the_cpu_autocasts_the_forward_and_still_learns(train_data, val_data):
    trainer, dtypes = _train(train_data, val_data, execution_environment="cpu", precision="bf16")
    assert set(dtypes) == {torch.bfloat16}  # training and validation forwards
    assert all(p.dtype == torch.float32 for p in trainer.network.parameters())  # weights stay fp32
    assert trainer.evaluator.state.metrics["accuracy"] > 0.8


@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_on_cuda_at_each_precision(train_data, val_data, precision):
    trainer, _ = _train(train_data, val_data, execution_environment="cuda", precision=precision)
    assert next(trainer.network.parameters()).is_cuda
    assert trainer.evaluator.state.metrics["accuracy"] > 0.8


@needs_cuda
def test_set_local_device_follows_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", str(torch.cuda.device_count() - 1))
    assert devices.set_local_device() == torch.device("cuda", torch.cuda.device_count() - 1)
    assert torch.cuda.current_device() == torch.cuda.device_count() - 1
