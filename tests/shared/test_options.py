import json
import math

import pytest

from shared.options import OptionError, TrainingOptions


def test_matlab_defaults():
    opts = TrainingOptions()
    assert (opts.solver, opts.max_epochs, opts.mini_batch_size, opts.shuffle) == ("adam", 30, 128, "once")
    assert (opts.validation_frequency, opts.validation_patience, opts.verbose_frequency) == (50, math.inf, 50)
    assert (opts.l2_regularization, opts.gradient_threshold, opts.gradient_threshold_method) == (1e-4, math.inf, "l2norm")
    assert (opts.learn_rate_schedule, opts.learn_rate_drop_factor, opts.learn_rate_drop_period) == ("none", 0.1, 10)
    assert (opts.plots, opts.verbose, opts.execution_environment, opts.checkpoint_path) == ("none", True, "auto", None)
    assert (opts.checkpoint_frequency, opts.checkpoint_frequency_unit, opts.output_network) == (1, "epoch", "last-iteration")


@pytest.mark.parametrize(("solver", "lr", "beta2"), [("adam", 1e-3, 0.999), ("rmsprop", 1e-3, 0.9), ("sgdm", 0.01, None)])
def test_solver_dependent_defaults(solver, lr, beta2):
    opts = TrainingOptions(solver)
    assert opts.learn_rate == lr
    assert opts.squared_decay == beta2
    assert TrainingOptions(solver, initial_learn_rate=0.5).learn_rate == 0.5


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("solver", "sgd", "'adam', 'sgdm', 'rmsprop'"),
        ("shuffle", "always", "'once', 'every-epoch', 'never'"),
        ("max_epochs", 0, "a positive integer"),
        ("max_epochs", 2.5, "a positive integer"),
        ("mini_batch_size", -4, "a positive integer"),
        ("validation_patience", 0, "a positive integer or Inf"),
        ("initial_learn_rate", -1e-3, "a number in (0.0, inf)"),
        ("l2_regularization", float("nan"), "a number in [0.0, inf)"),
        ("momentum", 1.5, "a number in [0.0, 1.0]"),
        ("gradient_threshold_method", "l1", "'l2norm', 'global-l2norm', 'absolute-value'"),
        ("learn_rate_schedule", "step", "'none', 'piecewise', 'cosine'"),
        ("plots", "yes", "'none', 'training-progress'"),
        ("verbose", "maybe", "true or false"),
        ("execution_environment", "tpu", "auto, cpu, cuda, cuda:N, gpu, multi-gpu or parallel"),
        ("precision", "fp8", "fp32, bf16, fp16 or auto"),
        ("deterministic", "sometimes", "true or false"),
        ("checkpoint_frequency_unit", "minute", "'epoch', 'iteration'"),
        ("seed", -1, "an integer in [0, 2**32) or None"),
    ],
)
def test_bad_values_name_option_value_and_allowed(name, value, allowed):
    with pytest.raises(OptionError) as info:
        TrainingOptions(**{name: value})
    message = str(info.value)
    assert f"{name}={value!r}" in message
    assert allowed in message


def test_unknown_option_suggests_the_close_name():
    with pytest.raises(OptionError, match=r"no option 'max_epoch'\. Did you mean 'max_epochs'\?"):
        TrainingOptions.from_dict({"max_epoch": 3})


def test_matlab_camel_case_names_and_values():
    opts = TrainingOptions.from_dict(
        {
            "Solver": "SGDM",
            "InitialLearnRate": 0.05,
            "MaxEpochs": 4,
            "MiniBatchSize": 8,
            "Shuffle": "every-epoch",
            "L2Regularization": 0,
            "ValidationPatience": "Inf",
            "Verbose": 0,
            "GradientThreshold": 1,
        }
    )
    assert (opts.solver, opts.learn_rate, opts.max_epochs, opts.mini_batch_size) == ("sgdm", 0.05, 4, 8)
    assert (opts.l2_regularization, opts.validation_patience, opts.verbose, opts.gradient_threshold) == (0.0, math.inf, False, 1.0)
    assert TrainingOptions.from_dict({"solverName": "rmsprop"}).solver == "rmsprop"  # MATLAB's positional argument, by name


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_round_trip_through_files(tmp_path, suffix):
    opts = TrainingOptions("rmsprop", max_epochs=3, validation_patience=5, checkpoint_path=str(tmp_path / "ck"), seed=None)
    path = opts.save(tmp_path / f"opts{suffix}")
    assert TrainingOptions.load(path) == opts
    if suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))  # strict JSON: infinities written as "Inf"
        assert data["gradient_threshold"] == "Inf"


def test_replace_validates():
    opts = TrainingOptions()
    assert opts.replace(max_epochs=2).max_epochs == 2
    with pytest.raises(OptionError, match="max_epochs=0"):
        opts.replace(max_epochs=0)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        TrainingOptions.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(OptionError, match="bad.json: not valid JSON"):
        TrainingOptions.load(bad)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("shuffle: sometimes\n")
    with pytest.raises(OptionError, match=r"wrong.yaml: TrainingOptions: shuffle='sometimes'"):
        TrainingOptions.load(wrong)
    with pytest.raises(OptionError, match=r"unknown format '.txt'"):
        TrainingOptions.load(tmp_path / "opts.txt")


def test_validation_frequency_takes_epoch_and_a_file_gives_only_what_it_sets(tmp_path):
    assert TrainingOptions(validation_frequency="Epoch").validation_frequency == "epoch"
    with pytest.raises(OptionError, match="validation_frequency='weekly' is invalid; expected a positive integer or 'epoch'"):
        TrainingOptions(validation_frequency="weekly")
    path = tmp_path / "o.json"
    path.write_text('{"MaxEpochs": 3, "ValidationFrequency": 50}')
    assert TrainingOptions.read_changes(path) == {"max_epochs": 3, "validation_frequency": 50}
    path.write_text('{"MaxEpochs": 0}')
    with pytest.raises(OptionError, match="o.json: TrainingOptions: max_epochs=0 is invalid"):
        TrainingOptions.read_changes(path)
