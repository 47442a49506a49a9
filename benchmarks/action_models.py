"""Model comparison on the synthetic demo videos (the docs' table): every video model, same data, same budget.

Each model trains for ``--epochs`` epochs (Adam 1e-3, batch 8) on split 1 of the demo data
and is evaluated on its held-out groups; one JSON line per model with accuracy, macro F1,
accuracy on the time-reversed pairs, parameters and training seconds. The baseline of each
line is the order-blind ``frame_average`` model of the same run.

    python benchmarks/action_models.py [--data demo_data/action] [--epochs 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from action.demo import pair_accuracy
from action.evaluate import evaluate_model
from action.models.factory import MODELS
from action.models.features import FeatureInput
from action.train import train_model
from action.video.synthetic import make_dataset
from benchmarks.common import emit

VIDEO_MODELS = [
    "frame_average",
    "c3d",
    "c3d_gru",
    "c3d_lstm",
    "gru_lstm",
    "cnn2d_gru",
    "cnn_gru",
    "cnn_lstm",
    "attention_lstm",
    "feature_gru",
]


def run(model: str, data: Path, out: Path, epochs: int) -> dict:
    extra = {"inputs": FeatureInput("efficientnet_lite0", out.parent / "features")} if model == "feature_gru" else {}
    start = time.perf_counter()
    trainer = train_model(
        data, out, model, options={"max_epochs": epochs, "mini_batch_size": 8, "verbose": False, "checkpoint_path": None}, **extra
    )
    trainer.run()
    seconds = time.perf_counter() - start
    report = evaluate_model(out, data, subset="test")
    params = sum(p.numel() for p in trainer.network.parameters())
    return {
        "accuracy": report["accuracy"],
        "f1_macro": report["f1_macro"],
        "pairs": pair_accuracy(report),
        "seconds": seconds,
        "params": params,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("demo_data/action"))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--models", nargs="*", default=VIDEO_MODELS)
    args = parser.parse_args()
    if not (args.data / "ucfTrainTestlist").is_dir():
        make_dataset(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = run("frame_average", args.data, Path(tmp) / "frame_average", args.epochs)
        for model in args.models:
            result = baseline if model == "frame_average" else run(model, args.data, Path(tmp) / model, args.epochs)
            pairs = sum(result["pairs"].values()) / len(result["pairs"])
            emit(
                f"{model}: held-out accuracy after {args.epochs} epochs on the demo videos",
                "accuracy",
                result["accuracy"],
                "frame_average (order-blind)",
                baseline["accuracy"],
                model=model,
                description=MODELS[model].description,
                f1_macro=round(result["f1_macro"], 4),
                reversed_pairs_accuracy=round(pairs, 4),
                params=result["params"],
                train_seconds=round(result["seconds"], 1),
            )


if __name__ == "__main__":
    main()
