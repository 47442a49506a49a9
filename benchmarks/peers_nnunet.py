"""nnU-Net v2 beside medact: the same task, data, machine and wall-clock training budget, one JSON line per system.

    pip install '.[peers]'      # nnunetv2 (not needed by medact itself)
    python benchmarks/peers_nnunet.py [--task demo|mni] [--minutes 3] [--threads 2]
                                      [--configurations 3d_fullres 2d] [--memory-target 2] [--work DIR]
    python benchmarks/peers_nnunet.py --task mni --work DIR --predict-only   # score models a cut-off run trained

What runs, each in its own process with ``--threads`` threads:

- **medact**: ``medseg plan DATA --out B --train-minutes M`` (the probe chooses patch, width, precision and
  iterations for M minutes here), ``medseg train``, ``medseg infer`` on the test images.
- **nnU-Net v2** (its own code, unchanged): the dataset as nnU-Net's raw layout (same files, ``_0000`` channel
  suffix), ``nnUNetv2_plan_and_preprocess`` with its default planner, and again with ``-gpu_memory_target G``
  (the smaller plan a CPU user would try); fold 0 is medact's own train/validation split (``splits_final.json``);
  ``nnUNetTrainer`` on ``cpu`` for the same M minutes. A trainer epoch is 250 iterations, longer than the whole
  budget on a CPU, so here an epoch is :data:`NNUNET_ITERATIONS_PER_EPOCH` iterations and, as medact does, the
  run fits its polynomial learning-rate decay to the epochs that fit after measuring its first one; it stops at the
  budget (checked before every iteration). Then nnU-Net's predictor (its defaults: Gaussian tiles at step 0.5,
  mirroring) on the test images.

Both systems' masks are scored by the same code (``medseg evaluate``: Dice per structure on the test labels).
Not counted in the budget, but printed: nnU-Net's preprocessing, medact's plan and data caching, prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.medseg_recipe import TASKS, prepare_data  # noqa: E402

NNUNET_ITERATIONS_PER_EPOCH = 10
NNUNET_VAL_ITERATIONS = 2
BUDGET_LOG_LINE = "training iterations within the budget:"
DATASET_ID = 501


def _environment(threads: int, work: Path) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), nnUNet_n_proc_DA=str(threads))
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(work / "nnunet" / name)
    return env


def _run(command: list[str], env: dict[str, str], log: Path) -> float:
    """Run ``command`` to completion (output to ``log``); seconds taken. Raises with the log's tail on failure."""
    start = time.perf_counter()
    with log.open("w", encoding="utf-8") as out:
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command[:4])} failed ({done.returncode}); {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - start


def _scores(masks: Path, data: Path, report: Path, env: dict[str, str]) -> dict[str, Any]:
    """Dice per structure of ``masks`` against ``data/labelsTs`` (``medseg evaluate``, the same code for both)."""
    medseg = [sys.executable, "-m", "medseg"]
    _run(
        [
            *medseg,
            "evaluate",
            "--pred",
            str(masks),
            "--label",
            str(data / "labelsTs"),
            "--out",
            str(report),
            "--dataset",
            str(data / "dataset.json"),
        ],
        env,
        report.with_suffix(".log"),
    )
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    return {"dice": {k: round(v["dice_mean"], 4) for k, v in summary["per_label"].items()}, "mean_dice": round(summary["mean_dice"], 4)}


def run_medact(data: Path, work: Path, minutes: float, env: dict[str, str]) -> dict[str, Any]:
    """plan --train-minutes, train, infer, evaluate; the record."""
    bundle, masks = work / "medact" / "bundle", work / "medact" / "masks"
    shutil.rmtree(work / "medact", ignore_errors=True)
    (work / "medact").mkdir(parents=True)
    medseg = [sys.executable, "-m", "medseg"]
    logs = work / "medact"
    _run([*medseg, "plan", str(data), "--out", str(bundle), "--train-minutes", str(minutes)], env, logs / "plan.log")
    train_s = _run([*medseg, "train", "--bundle", str(bundle), "--data", str(data)], env, logs / "train.log")
    images = [str(p) for p in _test_images(data)]
    infer_s = _run(
        [*medseg, "infer", "--bundle", str(bundle), "--input", *images, "--output", str(masks), "--format", "nifti"],
        env,
        logs / "infer.log",
    )
    plan = json.loads((bundle / "plan.json").read_text(encoding="utf-8"))["plan"]
    history = (bundle / "models" / "history.csv").read_text(encoding="utf-8").strip().splitlines()
    return {
        "system": "medact",
        "plan": {k: plan["values"].get(k) for k in ("roi_size", "width", "precision", "mirror_axes", "pixdim")},
        "iterations": int(history[-1].split(",")[1]) if len(history) > 1 else 0,
        "train_command_seconds": round(train_s, 1),
        "predict_seconds_per_case": round(infer_s / max(1, len(images)), 2),
        **_scores(masks, data, logs / "report", env),
    }


def _test_images(data: Path) -> list[Path]:
    return sorted(p for p in (data / "imagesTs").iterdir() if p.is_file())


def _case(path: Path) -> str:
    from medseg.io.channels import case_name

    return case_name(str(path))


def _as_nifti(source: Path, target: Path) -> None:
    """nnU-Net reads one file ending per dataset; the demo mixes NIfTI and NRRD (as scanners' exports do)."""
    import SimpleITK as sitk

    sitk.WriteImage(sitk.ReadImage(str(source)), str(target), useCompression=True)


def to_nnunet_raw(data: Path, raw: Path, split: dict[str, list[str]]) -> str:
    """Write ``data`` (Decathlon layout) as nnU-Net's raw dataset; returns its name. ``split``: medact's train/val stems."""
    description = json.loads((data / "dataset.json").read_text(encoding="utf-8"))
    name = f"Dataset{DATASET_ID:03d}_medact"
    target = raw / name
    shutil.rmtree(target, ignore_errors=True)
    (target / "imagesTr").mkdir(parents=True)
    (target / "labelsTr").mkdir()
    cases = []
    for entry in description.get("training", []) + description.get("validation", []):
        image, label = data / entry["image"], data / entry["label"]
        stem = _case(image)
        if stem not in split["train"] + split["val"]:
            continue
        _as_nifti(image, target / "imagesTr" / f"{stem}_0000.nii.gz")
        _as_nifti(label, target / "labelsTr" / f"{stem}.nii.gz")
        cases.append(stem)
    channels = description.get("channel_names") or description.get("modality") or {"0": "CT"}
    labels = (
        {v: int(k) for k, v in description["labels"].items()} if all(k.isdigit() for k in description["labels"]) else description["labels"]
    )
    (target / "dataset.json").write_text(
        json.dumps({"channel_names": channels, "labels": labels, "numTraining": len(cases), "file_ending": ".nii.gz"}, indent=1),
        encoding="utf-8",
    )
    return name


def medact_split(data: Path) -> dict[str, list[str]]:
    """The training and validation case ids medact's ``train`` uses (its one rule, seed 0 as the bundle's)."""
    from medseg.datasets.splits import case_id, split_cases

    train, val = split_cases(data, seed=0, check=False)
    return {"train": [case_id(i) for i in train], "val": [case_id(i) for i in val]}


def nnunet_plan(name: str, env: dict[str, str], logs: Path, configurations: list[str], memory_target: float | None) -> tuple[str, float]:
    """``nnUNetv2_plan_and_preprocess`` (default planner, or ``-gpu_memory_target``); ``(plans name, seconds)``."""
    tool = str(Path(sys.executable).with_name("nnUNetv2_plan_and_preprocess"))
    plans = "nnUNetPlans" if memory_target is None else f"nnUNetPlans_{memory_target:g}G"
    extra = [] if memory_target is None else ["-gpu_memory_target", f"{memory_target:g}", "-overwrite_plans_name", plans]
    command = [tool, "-d", str(DATASET_ID), "-c", *configurations, "-np", "1", "-npfp", "1", *extra]
    return plans, _run(command, env, logs / f"preprocess_{plans}.log")


def _budget_trainer(base: type, seconds: float) -> type:
    """``base`` (nnUNetTrainer) that stops at ``seconds`` of training and fits its LR decay to the epochs that fit."""
    import numpy as np

    class BudgetTrainer(base):  # type: ignore[misc, valid-type]
        def on_train_start(self) -> None:
            super().on_train_start()
            self.budget_start = time.perf_counter()
            self.iterations_done = 0

        def train_step(self, batch: dict) -> dict:
            if time.perf_counter() - self.budget_start >= seconds:
                raise TimeoutError("budget")
            self.iterations_done += 1
            return super().train_step(batch)

        def on_train_end(self) -> None:
            self.print_to_log_file(f"{BUDGET_LOG_LINE} {self.iterations_done}")  # for --predict-only
            super().on_train_end()

        def on_epoch_end(self) -> None:
            super().on_epoch_end()
            per_epoch = (time.perf_counter() - self.budget_start) / self.current_epoch
            self.lr_scheduler.max_steps = max(self.current_epoch + 1, int(np.ceil(seconds / per_epoch)))  # as medact refits

    return BudgetTrainer


def _train_or_load(trainer: Any, predict_only: bool) -> tuple[float | None, int | None]:
    """Train ``trainer`` for its budget, or (``predict_only``) load the ``checkpoint_final.pth`` an earlier run of the
    same work folder left, e.g. one stopped while predicting. ``(training seconds, iterations)``; an earlier run's
    come from its training log (``None`` where the log does not say)."""
    if not predict_only:
        start = time.perf_counter()
        try:
            trainer.run_training()
        except TimeoutError:
            trainer.on_train_end()
        return round(time.perf_counter() - start, 1), trainer.iterations_done
    folder = Path(trainer.output_folder)
    checkpoint = folder / "checkpoint_final.pth"
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no trained model to predict with (train without --predict-only first)")
    trainer.initialize()
    trainer.load_checkpoint(str(checkpoint))
    iterations = None
    for log in sorted(folder.glob("training_log_*.txt")):
        for line in log.read_text(encoding="utf-8").splitlines():
            if BUDGET_LOG_LINE in line:
                iterations = int(line.rsplit(" ", 1)[-1])
    return None, iterations


def train_and_predict_nnunet(args: argparse.Namespace) -> dict[str, Any]:
    """In this process (its threads set): train ``args.configuration`` of ``args.plans`` for the budget, predict, score."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    torch.set_num_threads(args.threads)
    work, data = Path(args.work), Path(args.data)
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / args.name  # noqa: SIM112 (nnU-Net spells it so)
    plans = {**load_json(str(preprocessed / f"{args.plans}.json")), "continue_training": False}
    trainer = _budget_trainer(nnUNetTrainer, args.minutes * 60)(
        plans=plans,
        configuration=args.configuration,
        fold=0,
        dataset_json=load_json(str(preprocessed / "dataset.json")),
        device=torch.device("cpu"),
    )
    trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = NNUNET_ITERATIONS_PER_EPOCH, NNUNET_VAL_ITERATIONS
    trainer.num_epochs = 100_000  # the budget stops it
    train_s, iterations = _train_or_load(trainer, args.predict_only)
    tag = f"{args.plans}_{args.configuration}"
    inputs, masks = work / "nnunet" / "test_images", work / "nnunet" / f"masks_{tag}"
    inputs.mkdir(parents=True, exist_ok=True)
    for image in _test_images(data):
        _as_nifti(image, inputs / f"{_case(image)}_0000.nii.gz")
    trainer.set_deep_supervision_enabled(False)  # as nnU-Net's own final validation does before predicting
    trainer.network.eval()
    predictor = nnUNetPredictor(perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(
        trainer.network,
        trainer.plans_manager,
        trainer.configuration_manager,
        [trainer.network.state_dict()],
        trainer.dataset_json,
        "nnUNetTrainer",
        trainer.inference_allowed_mirroring_axes,
    )
    begin = time.perf_counter()
    predictor.predict_from_files(str(inputs), str(masks), num_processes_preprocessing=1, num_processes_segmentation_export=1)
    cases = len(list(inputs.iterdir()))
    configuration = trainer.configuration_manager
    return {
        "system": f"nnU-Net v2 {args.configuration} ({args.plans})",
        "plan": {
            "patch_size": list(configuration.patch_size),
            "batch_size": configuration.batch_size,
            "spacing": list(configuration.spacing),
        },
        "iterations": iterations,
        "train_seconds": train_s,
        **({"scored_from": "checkpoint_final.pth of an earlier run"} if args.predict_only else {}),
        "predict_seconds_per_case": round((time.perf_counter() - begin) / max(1, cases), 2),
        **_scores(masks, data, work / "nnunet" / f"report_{tag}", dict(os.environ)),
    }


def _run_one(args: argparse.Namespace, run: tuple[str, str, str], data: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """``run`` = (dataset name, plans, configuration) trained (or, ``--predict-only``, loaded) and scored in a process of
    its own (its thread count set before torch starts); its record."""
    name, plans, configuration = run
    command = [sys.executable, __file__, "--one", name, plans, configuration, "--data", str(data), "--work", str(work)]
    command += ["--minutes", str(args.minutes), "--threads", str(args.threads)]
    command += ["--predict-only"] if args.predict_only else []
    log = work / "nnunet" / f"{'predict' if args.predict_only else 'train'}_{plans}_{configuration}.log"
    _run(command, env, log)
    return json.loads(log.read_text(encoding="utf-8").strip().splitlines()[-1])


def predict_earlier_runs(args: argparse.Namespace, data: Path, work: Path, env: dict[str, str], common: dict[str, Any]) -> None:
    """``--predict-only``: score every nnU-Net model of ``args.configurations`` an earlier run in ``work`` trained
    (its ``checkpoint_final.pth``) and did not score, e.g. one whose prediction was cut off; nothing is planned or
    trained again."""
    results = Path(env["nnUNet_results"])
    found = 0
    for folder in sorted(results.glob("Dataset*/*__*__*/fold_0")):
        _, plans, configuration = folder.parent.name.split("__")
        scored = work / "nnunet" / f"report_{plans}_{configuration}" / "summary.json"
        if configuration in args.configurations and (folder / "checkpoint_final.pth").is_file() and not scored.is_file():
            found += 1
            print(json.dumps({**common, **_run_one(args, (folder.parents[1].name, plans, configuration), data, work, env)}), flush=True)
    if not found:
        raise SystemExit(f"{results}: no trained, unscored nnU-Net model of {' '.join(args.configurations)} to predict with")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="demo", choices=TASKS)
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget of each system (wall clock)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--configurations", nargs="+", default=["3d_fullres", "2d"])
    parser.add_argument("--memory-target", type=float, default=2.0, help="GiB for nnU-Net's shrunk plan (-gpu_memory_target)")
    parser.add_argument("--mni-resolution", type=int, default=1, choices=[1, 2])
    parser.add_argument("--work", default=str(ROOT / "work" / "peers"))
    parser.add_argument("--skip-medact", action="store_true", help="only nnU-Net (medact's record from an earlier run)")
    parser.add_argument(
        "--predict-only", action="store_true", help="score the nnU-Net models an earlier run in --work trained (its prediction cut off)"
    )
    parser.add_argument("--one", nargs=3, metavar=("NAME", "PLANS", "CONFIGURATION"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        args.name, args.plans, args.configuration = args.one
        print(json.dumps(train_and_predict_nnunet(args)), flush=True)
        return 0
    work = Path(args.work).resolve()
    env = _environment(args.threads, work)
    data = prepare_data(args.task, work / "data", args.mni_resolution)
    common = {
        "figure": f"{args.task}: test Dice after {args.minutes:g} minutes of training",
        "threads": args.threads,
        "cpus": os.cpu_count(),
    }
    if args.predict_only:
        predict_earlier_runs(args, data, work, env, common)
        return 0
    if not args.skip_medact:
        print(json.dumps({**common, **run_medact(data, work, args.minutes, env)}), flush=True)
    for folder in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        shutil.rmtree(env[folder], ignore_errors=True)
        Path(env[folder]).mkdir(parents=True)
    split = medact_split(data)
    name = to_nnunet_raw(data, Path(env["nnUNet_raw"]), split)
    default_plans: dict[str, Any] = {}
    for memory_target in (None, args.memory_target):
        plans, preprocess_s = nnunet_plan(name, env, work / "nnunet", args.configurations, memory_target)
        preprocessed = Path(env["nnUNet_preprocessed"]) / name
        (preprocessed / "splits_final.json").write_text(json.dumps([split]), encoding="utf-8")
        planned = json.loads((preprocessed / f"{plans}.json").read_text(encoding="utf-8"))["configurations"]
        for configuration in args.configurations:
            shape = {k: planned[configuration].get(k) for k in ("patch_size", "batch_size", "spacing")}
            if default_plans.get(configuration) == shape:  # the memory target changed nothing: the same run again
                print(
                    json.dumps({**common, "system": f"nnU-Net v2 {configuration} ({plans})", "same_plan_as": "nnUNetPlans", "plan": shape})
                )
                continue
            default_plans.setdefault(configuration, shape)
            record = _run_one(args, (name, plans, configuration), data, work, env)
            print(json.dumps({**common, **record, "preprocess_seconds": round(preprocess_s, 1)}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
