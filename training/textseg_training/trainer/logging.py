"""Run logs: CSV (always), TensorBoard (when installed) and a PNG of the loss and mIoU curves."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from textseg.fileio import atomic_write_bytes


class RunLog:
    def __init__(self, output_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.output_dir = output_dir
        self.rows: list[dict[str, float]] = []
        self._writer = None
        if not enabled:
            return
        output_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = output_dir / "metrics.csv"
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(output_dir / "tensorboard"))
        except ImportError:  # TensorBoard is optional; the CSV has everything
            self._writer = None

    def log(self, iteration: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"iteration": iteration, **{k: float(v) for k, v in values.items()}}
        self.rows.append(row)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, iteration)
        self._write_csv()

    def restore(self, rows: list[dict[str, float]]) -> None:
        """Keep the history of a resumed run (rows up to the resumed iteration)."""
        self.rows = list(rows)

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.csv_path, text.getvalue().encode())

    def plot(self) -> Path | None:
        """loss and val mIoU against iteration, as curves.png."""
        if not self.enabled or not self.rows:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, (loss_ax, miou_ax) = plt.subplots(1, 2, figsize=(11, 4))
        loss = [(r["iteration"], r["train/loss"]) for r in self.rows if "train/loss" in r]
        miou = [(r["iteration"], r["val/miou"]) for r in self.rows if "val/miou" in r]
        if loss:
            loss_ax.plot(*zip(*loss, strict=True))
        loss_ax.set(title="training loss", xlabel="iteration")
        if miou:
            miou_ax.plot(*zip(*miou, strict=True), marker="o")
        miou_ax.set(title="validation mIoU (%)", xlabel="iteration")
        for axis in (loss_ax, miou_ax):
            axis.grid(alpha=0.3)
        buffer = io.BytesIO()
        figure.tight_layout()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
        return atomic_write_bytes(self.output_dir / "curves.png", buffer.getvalue())

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
