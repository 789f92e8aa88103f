"""Segmentation metrics: confusion matrix, IoU / category IoU, evaluation loop and reports.

Confusion matrix convention: rows are ground truth, columns are predictions; pixels labelled
`ignore_index` are excluded. IoU of a class absent from both ground truth and predictions is
NaN and left out of the mean.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from textseg.fileio import atomic_write_bytes

Categories = Sequence[tuple[str, Sequence[int]]]  # e.g. DatasetSpec.categories


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum `tensor` over all ranks in place; a no-op when not running distributed."""
    if not _distributed():
        return tensor
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        # NCCL reduces CUDA tensors only: round-trip through the current device.
        on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_gpu)
        tensor.copy_(on_gpu)
    else:
        dist.all_reduce(tensor)
    return tensor


def _as_tensor(x: Tensor | np.ndarray, device: torch.device) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(device=device, dtype=torch.int64).flatten()


class ConfusionMatrix:
    """Accumulates a [K, K] int64 confusion matrix (rows: ground truth, columns: prediction)."""

    def __init__(
        self, num_classes: int, ignore_index: int, device: torch.device | str = "cpu"
    ) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.mat = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.mat.zero_()

    def update(self, pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> None:
        """Add predictions (class ids) and targets of the same shape, any layout."""
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
        k = self.num_classes
        p, t = _as_tensor(pred, self.mat.device), _as_tensor(target, self.mat.device)
        keep = t != self.ignore_index
        p, t = p[keep], t[keep]
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= k):
            raise ValueError(f"target values outside 0..{k - 1} (ignore {self.ignore_index})")
        if p.numel() and (int(p.min()) < 0 or int(p.max()) >= k):
            raise ValueError(f"predicted class ids outside 0..{k - 1}")
        self.mat += torch.bincount(t * k + p, minlength=k * k).reshape(k, k)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix of the same classes (e.g. one gathered from another process)."""
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes} classes into {self.num_classes}")
        self.mat += other.mat.to(self.mat.device)
        return self

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the matrices of all DDP ranks (no-op when not distributed)."""
        all_reduce_sum(self.mat)
        return self

    @property
    def matrix(self) -> np.ndarray:
        return self.mat.cpu().numpy()

    def iou(self) -> np.ndarray:
        """Per-class IoU = TP / (TP + FP + FN), NaN where the class never occurs."""
        m = self.matrix.astype(np.float64)
        tp = np.diag(m)
        union = m.sum(0) + m.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        iou = self.iou()
        return float(np.nanmean(iou)) if not np.isnan(iou).all() else math.nan

    def pixel_accuracy(self) -> float:
        m = self.matrix
        total = m.sum()
        return float(np.trace(m) / total) if total else math.nan

    def class_accuracy(self) -> np.ndarray:
        """Per-class recall TP / ground-truth pixels, NaN where the class has no pixels."""
        m = self.matrix.astype(np.float64)
        gt = m.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(gt > 0, np.diag(m) / gt, np.nan)

    def per_class(self, class_names: Sequence[str]) -> list[dict[str, Any]]:
        """One row per class: id, name, iou, accuracy, gt_pixels, pred_pixels."""
        if len(class_names) != self.num_classes:
            raise ValueError(f"{len(class_names)} names for {self.num_classes} classes")
        m, iou, acc = self.matrix, self.iou(), self.class_accuracy()
        return [{"id": i, "name": name, "iou": float(iou[i]), "accuracy": float(acc[i]),
                 "gt_pixels": int(m[i].sum()), "pred_pixels": int(m[:, i].sum())}
                for i, name in enumerate(class_names)]

    def grouped(self, categories: Categories) -> ConfusionMatrix:
        """The matrix with classes merged into categories (classes in none go to a hidden
        extra bucket, so their pixels still count as errors against the categories)."""
        names = [name for name, _ in categories]
        group = torch.full((self.num_classes,), len(names), dtype=torch.int64)
        for index, (name, ids) in enumerate(categories):
            for class_id in ids:
                if not 0 <= class_id < self.num_classes:
                    raise ValueError(f"category {name!r} names class {class_id} outside "
                                     f"0..{self.num_classes - 1}")
                group[class_id] = index
        c = len(names) + 1
        onehot = F.one_hot(group, c).to(torch.float64)  # [K, C]
        merged = onehot.T @ self.mat.cpu().to(torch.float64) @ onehot
        out = ConfusionMatrix(c, ignore_index=-1)
        out.mat = merged.round().to(torch.int64)
        return out

    def category_iou(self, categories: Categories) -> dict[str, float]:
        """IoU per category (e.g. the Cityscapes flat / construction / ... groups)."""
        iou = self.grouped(categories).iou()
        return {name: float(iou[i]) for i, (name, _) in enumerate(categories)}


@dataclass
class EvalResult:
    """Metrics from one confusion matrix (IoU values on the 0..1 scale)."""

    confusion: np.ndarray  # int64 [K, K], rows ground truth
    iou: np.ndarray  # float [K], NaN for classes never seen
    miou: float
    pixel_accuracy: float
    class_accuracy: np.ndarray
    category_iou: dict[str, float] | None = None
    # Further outputs scored the same way, by name: e.g. "score", the TGM's cosine map alone
    # (argmax over its K channels), the one output only the text can change.
    outputs: dict[str, EvalResult] = field(default_factory=dict)

    @classmethod
    def from_confusion(
        cls, cm: ConfusionMatrix, categories: Categories | None = None
    ) -> EvalResult:
        return cls(cm.matrix, cm.iou(), cm.miou(), cm.pixel_accuracy(), cm.class_accuracy(),
                   cm.category_iou(categories) if categories else None)

    @property
    def mean_category_iou(self) -> float | None:
        if not self.category_iou:
            return None
        return float(np.nanmean(list(self.category_iou.values())))


ModelFn = Callable[[Tensor], Tensor]
# Several outputs of one forward: "out" is the prediction scored as the result; every other
# name gets its own confusion matrix (EvalResult.outputs).
NamedModelFn = Callable[[Tensor], Mapping[str, Tensor]]
PRIMARY_OUTPUT = "out"


def _named(model_fn: ModelFn | NamedModelFn) -> NamedModelFn:
    def named(images: Tensor) -> Mapping[str, Tensor]:
        result = model_fn(images)
        if isinstance(result, Mapping):
            if PRIMARY_OUTPUT not in result:
                raise ValueError(f"model_fn returned outputs {sorted(result)}, without "
                                 f"{PRIMARY_OUTPUT!r} (the prediction to score)")
            return result
        return {PRIMARY_OUTPUT: result}
    return named


def predict_outputs(
    model_fn: ModelFn | NamedModelFn,
    images: Tensor,
    size: tuple[int, int] | torch.Size,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
) -> dict[str, Tensor]:
    """Class scores [N,K,H,W] at `size` for every output of `model_fn`: softmax averaged over
    scales (and flips), or the raw logits for a single scale without flip (same argmax, no
    softmax cost)."""
    size = tuple(size)
    named = _named(model_fn)
    single = len(scales) == 1 and scales[0] == 1.0 and not flip
    totals: dict[str, Tensor] = {}
    for scale in scales:
        h, w = images.shape[-2:]
        x = images if scale == 1.0 else F.interpolate(
            images, size=(max(1, round(h * scale)), max(1, round(w * scale))),
            mode="bilinear", align_corners=False)
        views = [(x, False), (x.flip(-1), True)] if flip else [(x, False)]
        for view, flipped in views:
            for name, logits in named(view).items():
                if logits.ndim != 4:
                    raise ValueError(f"model_fn output {name!r} must be [N,K,h,w] logits, got "
                                     f"{tuple(logits.shape)}")
                logits = F.interpolate(logits.float(), size=size, mode="bilinear",
                                       align_corners=False) if logits.shape[-2:] != size \
                    else logits
                if flipped:
                    logits = logits.flip(-1)
                if single:
                    totals[name] = logits
                    continue
                probs = logits.float().softmax(1)
                totals[name] = probs if name not in totals else totals[name] + probs
    if single:
        return totals
    views = len(scales) * (2 if flip else 1)
    return {name: total / views for name, total in totals.items()}


def predict_probs(
    model_fn: ModelFn,
    images: Tensor,
    size: tuple[int, int] | torch.Size,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
) -> Tensor:
    """The prediction's class scores [N,K,H,W] at `size` (see predict_outputs)."""
    return predict_outputs(model_fn, images, size, flip, scales)[PRIMARY_OUTPUT]


@torch.no_grad()
def evaluate(
    model_fn: ModelFn | NamedModelFn,
    loader: Iterable[tuple[Tensor, Tensor]],
    num_classes: int,
    ignore_index: int,
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    device: torch.device | str = "cpu",
    categories: Categories | None = None,
    progress: bool = True,
    outputs: Sequence[str] = (PRIMARY_OUTPUT,),
) -> EvalResult:
    """Evaluate `model_fn(images) -> logits [N,K,h,w]` (any h, w) over (images, labels) batches.

    Logits are upsampled bilinearly to the label size; with `flip` / several `scales` the softmax
    probabilities of all views are averaged. `model_fn` may return several named outputs (one
    of them "out"): those named in `outputs` are scored, the others in the result's `outputs`
    (named up front, so that under DDP a rank with an empty shard sums the same matrices). Put
    the model in eval mode first. Under DDP each rank evaluates its shard and the confusion
    matrices are summed over ranks.
    """
    if not scales:
        raise ValueError("scales must not be empty")
    if PRIMARY_OUTPUT not in outputs:
        raise ValueError(f"outputs {tuple(outputs)} must include {PRIMARY_OUTPUT!r}")
    matrices = {name: ConfusionMatrix(num_classes, ignore_index, device) for name in outputs}
    show = progress and (not _distributed() or dist.get_rank() == 0)
    for images, labels in tqdm(loader, desc="evaluate", disable=not show, leave=False):
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        predicted = predict_outputs(model_fn, images, labels.shape[-2:], flip, scales)
        missing = set(matrices) - set(predicted)
        if missing:
            raise ValueError(f"model_fn returned no {sorted(missing)} (outputs asked for)")
        for name, cm in matrices.items():
            scores = predicted[name]
            if scores.shape[1] != num_classes:
                raise ValueError(f"model_fn output {name!r} has {scores.shape[1]} classes, "
                                 f"expected {num_classes}")
            cm.update(scores.argmax(1), labels)
    for cm in matrices.values():
        cm.all_reduce()
    result = EvalResult.from_confusion(matrices.pop(PRIMARY_OUTPUT), categories)
    result.outputs = {name: EvalResult.from_confusion(cm, categories)
                      for name, cm in matrices.items()}
    return result


# ----------------------------------------------------------------------------------- reports

def save_confusion_png(
    cm: ConfusionMatrix | np.ndarray, class_names: Sequence[str], path: str | Path
) -> Path:
    """Row-normalised confusion matrix (each ground-truth row sums to 1) as a PNG, written
    atomically."""
    # Imported here: matplotlib is only needed for this figure.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    m = (cm.matrix if isinstance(cm, ConfusionMatrix) else np.asarray(cm)).astype(np.float64)
    k = m.shape[0]
    if m.shape != (k, k) or len(class_names) != k:
        raise ValueError(f"confusion {m.shape} does not match {len(class_names)} class names")
    rows = m.sum(1, keepdims=True)
    norm = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)

    side = max(5.0, 0.45 * k + 2.5)
    fig = Figure(figsize=(side, side), dpi=100)
    FigureCanvasAgg(fig)  # the Agg backend, independent of pyplot's global state
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(class_names), rotation=90)
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if k <= 30:  # cell values stay legible up to about 30 classes
        for i, j in zip(*np.nonzero(norm >= 0.005), strict=True):
            ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


def _pct(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def markdown_report(
    result: EvalResult,
    class_names: Sequence[str],
    title: str,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A Markdown page: `extra` key/values, mIoU, pixel accuracy, per-class IoU table and the
    category IoU when the result has it. IoU of classes absent from the data shows "n/a"."""
    if len(class_names) != len(result.iou):
        raise ValueError(f"{len(class_names)} names for {len(result.iou)} classes")
    lines = [f"# {title}", ""]
    if extra:
        lines += ["| | |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in extra.items()]
        lines.append("")
    lines += [f"- **mIoU**: {_pct(result.miou)} %",
              f"- **pixel accuracy**: {_pct(result.pixel_accuracy)} %"]
    if result.category_iou:
        lines.append(f"- **category mIoU**: {_pct(result.mean_category_iou)} %")
    gt_pixels = result.confusion.sum(1)
    lines += ["", "## Per-class IoU", "", "| id | class | IoU % | accuracy % | GT pixels |",
              "|---:|---|---:|---:|---:|"]
    for i, name in enumerate(class_names):
        lines.append(f"| {i} | {name} | {_pct(result.iou[i])} | "
                     f"{_pct(result.class_accuracy[i])} | {int(gt_pixels[i])} |")
    if result.category_iou:
        lines += ["", "## Category IoU", "", "| category | IoU % |", "|---|---:|"]
        lines += [f"| {name} | {_pct(v)} |" for name, v in result.category_iou.items()]
    return "\n".join(lines) + "\n"


def write_report(
    path: str | Path,
    result: EvalResult,
    class_names: Sequence[str],
    title: str,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """`markdown_report` written atomically to `path`."""
    text = markdown_report(result, class_names, title, extra)
    return atomic_write_bytes(path, text.encode("utf-8"))
