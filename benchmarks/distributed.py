"""Training throughput of 1 process vs 2 DDP processes (gloo, 1 thread each) for both tasks, same run.

Action: c3d_gru on synthetic clips (48 videos, 20x64x64). Segmentation: the V-Net bundle's network
(width 4) on random 32^3 patches. Prints samples/s for each world size.

    python benchmarks/distributed.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import emit  # noqa: E402

WORKER = r"""
import json, sys, time, torch
from pathlib import Path
from shared.data import world
from shared.distributed import run_parallel
from shared.engine import build_trainer
from shared.options import TrainingOptions

def dataset(task):
    g = torch.Generator().manual_seed(0)
    if task == "action":
        x = torch.rand(48, 3, 20, 64, 64, generator=g)
        y = torch.randint(0, 8, (48,), generator=g)
        return [{"image": x[i], "label": int(y[i])} for i in range(48)]
    x = torch.rand(16, 1, 32, 32, 32, generator=g)
    y = (x > 0.5).long()
    return [{"image": x[i], "label": y[i]} for i in range(16)]

def network(task):
    if task == "action":
        from action.models.factory import build_model
        return build_model("c3d_gru", 8), torch.nn.CrossEntropyLoss()
    from medseg.networks import VNet
    from monai.losses import DiceLoss
    return VNet(out_channels=2, width=4), DiceLoss(to_onehot_y=True, softmax=True)

class Data(torch.utils.data.Dataset):
    def __init__(self, items): self.items = items
    def __len__(self): return len(self.items)
    def __getitem__(self, i): return self.items[i]

def main(local_rank, args):
    task, out = args
    torch.set_num_threads(1 if world()[0] > 1 else 2)
    net, loss = network(task)
    options = TrainingOptions(max_epochs=2, mini_batch_size=4, verbose=False, checkpoint_path=None, seed=0)
    trainer = build_trainer(net, loss, options, Data(dataset(task)))
    start = {}
    from ignite.engine import Events
    trainer.add_event_handler(Events.EPOCH_STARTED(once=2), lambda e: start.setdefault("t", time.perf_counter()))
    trainer.run()
    if world()[1] == 0:
        Path(out).write_text(json.dumps({"seconds": time.perf_counter() - start["t"], "samples": len(dataset(task))}))

if __name__ == "__main__":
    task, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    run_parallel(main, (task, out), n) if n > 1 else main(0, (task, out))
"""


def measure(task: str, processes: int, tmp: Path) -> float:
    script, out = tmp / "worker.py", tmp / f"{task}_{processes}.json"
    script.write_text(WORKER)
    subprocess.run(
        [sys.executable, str(script), task, str(out), str(processes)], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    result = json.loads(out.read_text())
    return result["samples"] / result["seconds"]  # second epoch only: no start-up costs


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for task in ("action", "medseg"):
            one, two = measure(task, 1, Path(tmp)), measure(task, 2, Path(tmp))
            emit(
                f"{task}: training samples/s, 2 DDP processes (gloo, 1 thread each) on {os.cpu_count()} cores",
                "samples/s",
                two,
                "1 process (2 threads)",
                one,
                speedup=round(two / one, 3),
                torch_threads_single=2,
            )


if __name__ == "__main__":
    main()
