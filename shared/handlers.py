"""Thin Ignite handlers of the shared engine: validation cadence, gradient clipping, history, table, figure.

Each handler only adapts: the maths lives in :mod:`shared.metrics`, the figure in
:mod:`shared.plots`, file safety in :mod:`shared.io`. They are attached by
:func:`shared.engine.build_trainer` in a fixed order (validate, record/print, plot,
checkpoint) so that each one sees what the previous one produced for the same iteration.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines import IterationEvents
from tqdm import tqdm

from shared.io import append_csv_rows, atomic_write_csv, atomic_write_json
from shared.plots import save_figure, training_progress_figure

BASE_COLUMNS = ("epoch", "iteration", "time_elapsed_s", "learn_rate", "train_loss")


def total_iterations(engine: Engine) -> int:
    """Iterations of the whole run (``max_epochs * epoch_length``)."""
    return int(engine.state.max_epochs * engine.state.epoch_length)


def loss_value(output: Any) -> float:
    """The mini-batch loss from a MONAI trainer output (batched dict or decollated list)."""
    item = output if isinstance(output, Mapping) else output[0]
    return float(item["loss"])


class TimeBudget:
    """Fit a run to ``minutes`` of training (``TrainingOptions.max_minutes``), validation included, and stop it there.

    - The run's length: from the end of this process's first epoch (start-up and the validation at iteration 1
      behind it), every :data:`REFIT_SHARE` of the budget, the seconds per iteration so far (periodic validations
      included) give the whole epochs left; ``refit(max_epochs)`` sets the new length and fits the learning-rate schedule
      to it (the polynomial decay ends at the new last iteration). A machine slower or faster than ``plan`` probed, or
      busy with other work, still ends its schedule within the budget. ``reserve()`` (seconds; the last validation
      pass's) is kept for the final validation of the last weights.
    - The stop: the training monitor's clock (``trainer.monitor``, attached before), which checkpoints keep, so a resumed
      run counts the minutes it spent and one resumed past its budget stops before its first iteration. (Ignite's
      ``TimeLimit`` counts from its own attachment: a resumed run would get its whole budget again.)
    """

    #: refit the length at most once per this share of the budget
    REFIT_SHARE = 0.1

    def __init__(self, minutes: float, refit: Callable[[int], None] | None = None, reserve: Callable[[], float] | None = None) -> None:
        self.minutes, self.limit, self.refit = minutes, minutes * 60.0, refit
        self.reserve = reserve or (lambda: 0.0)
        self._mark: tuple[float, int] | None = None
        self._last_fit = -math.inf

    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.STARTED, self._stop_if_spent)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._stop_if_spent)
        if self.refit is not None:
            trainer.add_event_handler(Events.EPOCH_COMPLETED, self._fit_length)

    def _stop_if_spent(self, engine: Engine) -> None:
        if engine.state.iteration >= total_iterations(engine):
            if self._mark is not None and self._last_fit > -math.inf:
                engine.monitor.stop_reason = (
                    f"Time budget of {self.minutes:g} min: the run was fitted to {engine.state.iteration} iterations"
                )
            return
        if engine.monitor.elapsed() + self.reserve() >= self.limit:
            engine.monitor.stop_reason = (
                f"Time budget of {self.minutes:g} min reached at iteration {engine.state.iteration} of {total_iterations(engine)}"
            )
            engine.terminate()

    def _fit_length(self, engine: Engine) -> None:
        elapsed, iteration = engine.monitor.elapsed(), engine.state.iteration
        if self._mark is None:
            self._mark = (elapsed, iteration)
            return
        if elapsed - self._last_fit < self.REFIT_SHARE * self.limit or iteration <= self._mark[1]:
            return
        per_iteration = (elapsed - self._mark[0]) / (iteration - self._mark[1])
        epochs_left = int(max(0.0, self.limit - self.reserve() - elapsed) / per_iteration) // engine.state.epoch_length
        epochs = engine.state.epoch + epochs_left
        if epochs != engine.state.max_epochs:
            self.refit(epochs)
        if epochs == engine.state.epoch:  # nothing more fits: the run ends here
            engine.monitor.stop_reason = f"Time budget of {self.minutes:g} min: the run was fitted to {engine.state.iteration} iterations"
        self._last_fit = elapsed


class GradientClipping:
    """MATLAB ``GradientThreshold`` / ``GradientThresholdMethod``, applied between backward and step.

    Args:
        threshold: clip above this value (``inf`` disables the handler).
        method: ``"l2norm"`` (each parameter tensor's L2 norm, MATLAB's default),
            ``"global-l2norm"`` (all gradients as one vector) or ``"absolute-value"`` (element-wise).
    """

    def __init__(self, parameters: Iterable[torch.nn.Parameter], threshold: float, method: str = "l2norm") -> None:
        self.parameters = [p for p in parameters if p.requires_grad]
        self.threshold, self.method = float(threshold), method

    def attach(self, trainer: Engine) -> None:
        if math.isfinite(self.threshold):
            trainer.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        scaler = getattr(engine, "scaler", None)
        if getattr(engine, "amp", False) and scaler is not None:  # fp16: clip the true gradients, not the scaled ones
            scaler.unscale_(engine.optimizer)
        grads = [p for p in self.parameters if p.grad is not None]
        if self.method == "l2norm":
            for p in grads:
                torch.nn.utils.clip_grad_norm_([p], self.threshold)
        elif self.method == "global-l2norm":
            torch.nn.utils.clip_grad_norm_(grads, self.threshold)
        else:
            torch.nn.utils.clip_grad_value_(grads, self.threshold)


class PeriodicValidation:
    """Run the evaluator at iteration 1, every ``frequency`` iterations and at the last iteration (MATLAB's cadence).

    ``frequency="epoch"``: at iteration 1 and at the end of every epoch. A run that ends anywhere else (a time budget
    reached mid-epoch, or refitted to end at the epoch just done) is validated once more when it ends, so that
    best-validation sees the last weights, those the learning-rate decay ended on (before this, 3-minute demo runs
    never validated their last 2-47 iterations, and one kept the weights of iteration 292 of 558).

    ``latest`` holds ``{"iteration": i, "metrics": {...}}`` of the most recent validation; ``seconds`` that pass's time.
    """

    def __init__(self, evaluator: Engine, frequency: int | str) -> None:
        self.evaluator, self.frequency = evaluator, frequency
        self.latest: dict[str, Any] = {"iteration": -1, "metrics": {}}
        self.seconds = 0.0
        self._trained = False  # an iteration ran in this process (a resumed run past its budget runs none)

    def due(self, engine: Engine, _event: Any = None) -> bool:
        it = engine.state.iteration
        every = engine.state.epoch_length if self.frequency == "epoch" else self.frequency
        return it == 1 or it % every == 0 or it == total_iterations(engine)

    def attach(self, trainer: Engine) -> None:
        """Before the training monitor and the best-network restore, which read what it found."""
        trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=self.due), self)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._mark_trained)
        trainer.add_event_handler(Events.COMPLETED, self._validate_last)

    def _mark_trained(self, _trainer: Engine) -> None:
        self._trained = True

    def _validate_last(self, trainer: Engine) -> None:
        if self._trained and self.latest["iteration"] != trainer.state.iteration:
            self(trainer)

    def __call__(self, trainer: Engine) -> None:
        started = time.perf_counter()
        self.evaluator.run(trainer.state.epoch)
        self.seconds = time.perf_counter() - started
        self.latest = {"iteration": trainer.state.iteration, "metrics": dict(self.evaluator.state.metrics)}

    def metrics_at(self, iteration: int) -> dict[str, Any]:
        return self.latest["metrics"] if self.latest["iteration"] == iteration else {}


class TrainingMonitor:
    """History rows, MATLAB's verbose table, history files and the training-progress figure.

    Files, linear in the run's length: ``history.csv`` gets the new rows appended (flushed) every
    ``verbose_frequency`` iterations and at each validation, rewritten whole only when a column appears;
    ``history.json`` (all rows, the stop reason) is written when the run ends. Checkpoints hold only the
    row count: a resumed run reads its rows back from ``history.csv`` (an earlier version rewrote both files
    whole every time and put every row into every checkpoint: quadratic writes, growing checkpoints).

    Args:
        key_metric: name of the key metric (``None``: loss only). Training values are read
            from ``trainer.state.metrics["train_<key>"]``, validation values from ``validation``.
        validation: the :class:`PeriodicValidation` handler, or ``None`` without validation data.
        output_dir: where ``history.csv``, ``history.json`` and ``training_progress.png`` go (``None``: nowhere;
            checkpoints then carry the rows).
        verbose: print a table row at iteration 1, every ``verbose_frequency`` iterations,
            at each validation and at the end.
        verbose_frequency: N of the above.
        plots: draw ``training_progress.png``: refreshed with the history files, at most every
            ``plot_interval_s`` seconds (a redraw costs ~0.3 s), and always at the end.
        print_fn: where table lines go (default: ``tqdm.write`` to stdout, safe beside a progress bar).
    """

    def __init__(
        self,
        key_metric: str | None,
        validation: PeriodicValidation | None,
        output_dir: str | Path | None,
        verbose: bool = True,
        verbose_frequency: int = 50,
        plots: bool = False,
        print_fn: Callable[[str], None] | None = None,
        plot_interval_s: float = 5.0,
    ) -> None:
        self.key_metric, self.validation = key_metric, validation
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.verbose, self.verbose_frequency, self.plots = verbose, verbose_frequency, plots
        self.print_fn = print_fn or (lambda line: tqdm.write(line, file=sys.stdout))
        self.rows: list[dict[str, Any]] = []
        self.stop_reason = ""
        self.plot_interval_s = plot_interval_s
        self._last_plot = -math.inf
        self._elapsed_before = 0.0
        self._started = time.perf_counter()
        self._written, self._csv_columns = 0, None  # rows already in history.csv, and its header

    # -- Ignite plumbing -------------------------------------------------------------------
    def attach(self, trainer: Engine) -> None:
        trainer.add_event_handler(Events.STARTED, self._on_started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration)
        trainer.add_event_handler(Events.COMPLETED, self._on_completed)

    def state_dict(self) -> dict[str, Any]:
        """The row count and time so far (the rows themselves are in ``history.csv``; without an output folder, here)."""
        self.write()  # every row up to this checkpoint is on disk before the checkpoint names it
        state: dict[str, Any] = {"row_count": len(self.rows), "elapsed": self.elapsed()}
        if self.output_dir is None:
            state["rows"] = [dict(row) for row in self.rows]
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if "rows" in state:
            self.rows = [dict(row) for row in state["rows"]]
        else:
            self.rows = read_history_csv(self.output_dir / "history.csv")[: int(state["row_count"])] if self.output_dir else []
        self._elapsed_before = float(state["elapsed"])
        self._started = time.perf_counter()
        self._written, self._csv_columns = 0, None  # rows a killed run appended after the checkpoint go: rewrite once

    def elapsed(self) -> float:
        """Training seconds so far, including runs before a resume."""
        return self._elapsed_before + time.perf_counter() - self._started

    @property
    def columns(self) -> list[str]:
        names = list(BASE_COLUMNS)
        if self.key_metric:
            names.append(f"train_{self.key_metric}")
        extra = sorted({k for row in self.rows for k in row if k.startswith("val_")})
        return (
            names
            + [k for k in ("val_loss", f"val_{self.key_metric}") if k in extra]
            + [k for k in extra if k not in ("val_loss", f"val_{self.key_metric}")]
        )

    def _on_started(self, trainer: Engine) -> None:
        self._elapsed_before = self.elapsed() if self.rows else 0.0
        self._started = time.perf_counter()
        self.rows = [row for row in self.rows if row["iteration"] <= trainer.state.iteration]
        if self.verbose:
            if trainer.state.iteration:
                self.print_fn(f"Resuming at iteration {trainer.state.iteration} (epoch {trainer.state.epoch + 1}).")
            self.print_fn(self._table_header())

    def _on_iteration(self, trainer: Engine) -> None:
        it = trainer.state.iteration
        row: dict[str, Any] = {
            "epoch": trainer.state.epoch,
            "iteration": it,
            "time_elapsed_s": round(self.elapsed(), 3),
            "learn_rate": float(trainer.optimizer.param_groups[0]["lr"]),
            "train_loss": loss_value(trainer.state.output),
        }
        if self.key_metric:
            row[f"train_{self.key_metric}"] = _scalar(trainer.state.metrics.get(f"train_{self.key_metric}"))
        validated = self.validation.metrics_at(it) if self.validation else {}
        for name, value in validated.items():
            row[f"val_{name}"] = _scalar(value)
        self.rows.append(row)
        if it == 1 or it % self.verbose_frequency == 0 or validated or it == total_iterations(trainer):
            if self.verbose:
                self.print_fn(self._table_row(row))
            self.write(trainer)

    def _on_completed(self, trainer: Engine) -> None:
        validated = self.validation.metrics_at(trainer.state.iteration) if self.validation else {}
        if validated and self.rows and self.rows[-1]["iteration"] == trainer.state.iteration:
            last = self.rows[-1]
            if not any(key.startswith("val_") for key in last):  # the validation at the end of a run stopped mid-cadence
                last.update({f"val_{name}": _scalar(value) for name, value in validated.items()})
                self._csv_columns = None  # history.csv already has this row: rewritten whole, once
                if self.verbose:
                    self.print_fn(self._table_row(last))
        done = trainer.state.iteration >= total_iterations(trainer)
        self.stop_reason = self.stop_reason or ("Max epochs completed" if done else "Stopped early")
        if self.verbose:
            self.print_fn(self._rule())
            self.print_fn(f"Training finished: {self.stop_reason}.")
        self.write(trainer, final=True)

    # -- outputs ---------------------------------------------------------------------------
    def write(self, trainer: Engine | None = None, final: bool = False) -> None:
        """Append new rows to history.csv; at the end also history.json; with plots on, training_progress.png."""
        if self.output_dir is None:
            return
        columns = self.columns
        csv_path = self.output_dir / "history.csv"
        if columns != self._csv_columns or not csv_path.is_file():
            atomic_write_csv(csv_path, self.rows, columns)  # new columns (a first validation): the whole file, once
            self._csv_columns = columns
        elif self._written < len(self.rows):
            append_csv_rows(csv_path, self.rows[self._written :], columns)
        self._written = len(self.rows)
        if final:
            summary = {"key_metric": self.key_metric, "stop_reason": self.stop_reason, "columns": columns, "rows": self.rows}
            atomic_write_json(self.output_dir / "history.json", summary)
        if self.plots and (final or time.perf_counter() - self._last_plot >= self.plot_interval_s):
            self._last_plot = time.perf_counter()
            info = self._figure_info(trainer)
            fig = training_progress_figure(self.rows, self.key_metric, info)
            save_figure(fig, self.output_dir / "training_progress.png")

    def _figure_info(self, trainer: Engine | None) -> dict[str, str]:
        info = {"Elapsed": _hms(self.elapsed())}
        if trainer is not None and self.rows:
            last = self.rows[-1]
            info["Epoch"] = f"{last['epoch']} of {trainer.state.max_epochs}"
            info["Iteration"] = f"{last['iteration']} of {total_iterations(trainer)}"
            info["Learn rate"] = f"{last['learn_rate']:.3g}"
        if self.stop_reason:
            info["Result"] = self.stop_reason
        return info

    # -- MATLAB's verbose table ------------------------------------------------------------
    _WIDTHS = (9, 13, 16, 14, 14, 14, 14, 17)

    def _rule(self) -> str:
        return "|" + "=" * (sum(self._WIDTHS) + len(self._WIDTHS) - 1) + "|"

    def _table_header(self) -> str:
        metric = (self.key_metric or "Metric").replace("_", " ").title()[:12]
        top = ("Epoch", "Iteration", "Time Elapsed", "Mini-batch", "Validation", "Mini-batch", "Validation", "Base Learning")
        bottom = ("", "", "(hh:mm:ss)", metric, metric, "Loss", "Loss", "Rate")
        line = lambda cells: "|" + "|".join(c.center(w) for c, w in zip(cells, self._WIDTHS)) + "|"
        return "\n".join([self._rule(), line(top), line(bottom), self._rule()])

    def _table_row(self, row: Mapping[str, Any]) -> str:
        key = self.key_metric
        cells = (
            str(row["epoch"]),
            str(row["iteration"]),
            _hms(row["time_elapsed_s"]),
            self._format_metric(row.get(f"train_{key}") if key else None),
            self._format_metric(row.get(f"val_{key}") if key else None),
            _fmt(row.get("train_loss")),
            _fmt(row.get("val_loss")),
            _format_learn_rate(row["learn_rate"]),
        )
        return "|" + "|".join(f"{c} ".rjust(w) for c, w in zip(cells, self._WIDTHS)) + "|"

    def _format_metric(self, value: Any) -> str:
        if value is None or not math.isfinite(value):
            return ""
        return f"{100 * value:.2f}%" if self.key_metric and "acc" in self.key_metric.lower() else f"{value:.4f}"


def read_history_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``history.csv`` (numbers parsed, empty cells left out); a line cut short by a crash is dropped."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return []
    columns = lines[0].split(",")
    rows = []
    for line in lines[1:]:
        cells = line.split(",")
        if len(cells) != len(columns):
            break  # a partial last line: the run was killed while appending
        row: dict[str, Any] = {}
        for name, cell in zip(columns, cells):
            if cell != "":
                row[name] = int(cell) if name in ("epoch", "iteration") else float(cell)
        rows.append(row)
    return rows


def _scalar(value: Any) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, torch.Tensor):
        return float(value.float().mean()) if value.numel() else float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _format_learn_rate(value: float) -> str:
    """MATLAB prints ``0.0010`` and switches to ``1.0000e-05`` below 1e-3."""
    return f"{value:.4f}" if value >= 1e-3 else f"{value:.4e}"


def _fmt(value: Any) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
