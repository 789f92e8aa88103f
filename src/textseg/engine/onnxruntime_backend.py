"""ONNX Runtime backend: CPU everywhere, the CUDA execution provider where present."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from textseg.engine.backend import SegmentationResult, check_batch, check_rgb
from textseg.engine.contract import (
    CONFIDENCE_OUTPUT,
    INPUT_NAME,
    LABELS_OUTPUT,
    ContractError,
)
from textseg.engine.graph_prune import output_removal
from textseg.engine.onnx_file import OnnxModel, describe_model, model_precision, read_onnx_model
from textseg.engine.qdq_cpu import uint8_zero_point_edits
from textseg.engine.self_check import (
    NOT_STORED,
    SelfCheckResult,
    act,
    check_policy,
    enforce,
    int8_advice,
    read_self_check,
    run_self_check,
)

# Preferred order; only those this onnxruntime build offers are used.
_PROVIDER_PREFERENCE = ("CUDAExecutionProvider", "CPUExecutionProvider")
# A sanity bound on one batched inference of a model with a dynamic batch axis.
DYNAMIC_MAX_BATCH = 64


class OnnxRuntimeBackend:
    """Loads any contract-conforming ONNX file and checks its interface and metadata."""

    name = "onnxruntime"
    # One CPU inference of 2 or 4 frames was no faster per frame than 2 or 4 inferences
    # (scripts/bench_batching.py: 0.85-1.19x), so the node does not batch by default here.
    batching_pays = False

    def __init__(self, model_path: str | Path, threads: int = 0,
                 providers: list[str] | None = None, spin_wait: bool = False,
                 self_check: str = "refuse", report=None,
                 onnx_model: OnnxModel | None = None) -> None:
        """`self_check`: refuse (default) to open a model whose stored self-check fails here
        (or an int8 file whose sums can saturate on this CPU), warn through `report`, or off.
        `onnx_model`: the file already parsed (load_backend parses it once for everyone)."""
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        check_policy(self_check)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime picks the core count
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Worker threads that busy-wait between operators keep both cores hot even while
        # the node decodes and publishes; sleeping leaves them to the rest of the process and
        # the vehicle. Measured here: node throughput no lower, about half the node overhead.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spin_wait else "0")
        available = ort.get_available_providers()
        chosen = providers or [p for p in _PROVIDER_PREFERENCE if p in available]
        self.uint8_activations = self.pruned_nodes = 0
        labels_only = None
        try:
            # parsed once: checked, rewritten and pruned below
            model = onnx_model or read_onnx_model(path)
            unreadable = None
        except ContractError as exc:  # InferenceSession says why first, below
            model, unreadable = None, exc
        on_cpu = bool(chosen) and chosen[0] == "CPUExecutionProvider"
        if model is not None and on_cpu and self_check != "off":
            _refuse_saturating_int8(model, path, self_check, report)
        whole: bytes | str = str(path)
        if model is not None:
            # A Q/DQ int8 model runs every convolution in int8 on the CPU only with its
            # activations as uint8 (textseg.engine.qdq_cpu: the same numbers, the file
            # unchanged); a float model is left as it is.
            zero_points = uint8_zero_point_edits(model) if on_cpu else {}
            self.uint8_activations = len(zero_points)
            whole = model.edited(zero_points) if zero_points else model.data
            # Frames that want labels only run a graph without the confidence's nodes
            # (textseg.engine.graph_prune); the whole graph opens on the first confidence.
            dropped, self.pruned_nodes = output_removal(model, CONFIDENCE_OUTPUT)
            if dropped:
                labels_only = model.edited(zero_points, dropped)
        self._options, self._providers = options, chosen
        self._whole_model = whole
        self._whole_session = None
        self._whole_lock = threading.Lock()
        self.model_path = path
        try:
            session = ort.InferenceSession(labels_only if self.pruned_nodes else
                                           self._whole_model, options, providers=chosen)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ContractError(f"{path} is not a loadable ONNX model: {exc}") from None
        self.session = session
        if not self.pruned_nodes:
            self._whole_session, self._whole_model = session, None
        self.providers = self.session.get_providers()
        if unreadable is not None:  # ONNX Runtime read what this reader cannot
            raise unreadable
        description = describe_model(model)  # textseg.engine.contract's checks
        self.info, self.has_confidence = description.info, description.has_confidence
        # Models exported before the batch axis became dynamic take one frame per inference.
        self.max_batch = DYNAMIC_MAX_BATCH if description.dynamic_batch else 1
        self.self_check: SelfCheckResult | None = None
        self.self_check_note = "off"
        if self_check != "off":
            self._run_self_check(path, self_check, report, model_precision(model))

    def _run_self_check(self, path: Path, policy: str, report, precision: str) -> None:
        metadata = self.session.get_modelmeta().custom_metadata_map
        stored = read_self_check(metadata, str(path))
        if stored is None:
            self.self_check_note = NOT_STORED
            return
        result = run_self_check(
            lambda frames: [r.labels for r in self.infer_batch(frames)], stored, precision,
            f"onnxruntime {ort.__version__} {self.providers[0]}")
        self.self_check, self.self_check_note = result, result.describe()
        advice = (int8_advice(metadata) if precision == "int8" else
                  "check the file (its sha256 against the published one) and the ONNX "
                  "Runtime version, or re-export it")
        enforce(result, path, policy, advice, report)

    def prepare_confidence(self) -> None:
        """Open the whole graph now rather than on the first frame that wants confidence."""
        self._confidence_session()

    def _confidence_session(self):
        with self._whole_lock:
            if self._whole_session is None:
                self._whole_session = ort.InferenceSession(self._whole_model, self._options,
                                                           providers=self._providers)
                self._whole_model = None  # the bytes are no longer needed
            return self._whole_session

    def _session_for(self, want_confidence: bool):
        if want_confidence and self.has_confidence:
            return self._confidence_session(), [LABELS_OUTPUT, CONFIDENCE_OUTPUT]
        return self.session, [LABELS_OUTPUT]

    @property
    def description(self) -> str:
        int8 = (f"; int8 activations as uint8 ({self.uint8_activations} zero points)"
                if self.uint8_activations else "")
        return f"onnxruntime {ort.__version__} ({', '.join(self.providers)}{int8})"

    def close(self) -> None:
        self.session = self._whole_session = self._whole_model = None

    def infer(self, rgb: np.ndarray, want_confidence: bool = False) -> SegmentationResult:
        rgb = check_rgb(rgb)
        session, names = self._session_for(want_confidence)
        results = session.run(names, {INPUT_NAME: rgb[None]})
        labels = results[0][0]
        confidence = results[1][0] if len(results) > 1 else None
        return SegmentationResult(labels=labels, confidence=confidence)

    def infer_batch(self, frames: list[np.ndarray], want_confidence: bool = False
                    ) -> list[SegmentationResult]:
        if len(frames) == 1:
            return [self.infer(frames[0], want_confidence)]
        batch = check_batch(frames, self.max_batch)
        session, names = self._session_for(want_confidence)
        results = session.run(names, {INPUT_NAME: batch})
        return [SegmentationResult(labels=results[0][i],
                                   confidence=results[1][i] if len(results) > 1 else None)
                for i in range(len(frames))]


def _refuse_saturating_int8(model: OnnxModel, path: Path, policy: str, report) -> None:
    """An int8 file whose uint8 x int8 sums can overflow on this CPU (x86 without VNNI:
    textseg.engine.int8_saturation) is refused, or reported, before it computes wrong labels."""
    from textseg.cpu import cpu_features
    from textseg.engine.int8_saturation import saturation_report

    cpu = cpu_features()
    if not cpu.int8_saturates or not any(n.op_type == "QuantizeLinear" for n in model.nodes):
        return
    try:
        found = saturation_report(model)
    except ValueError:
        return  # weights this check cannot read: ONNX Runtime's own check follows
    if found.could_saturate:
        act(f"{path}: this CPU ({cpu.describe()}) has no AVX512-VNNI / AVX-VNNI, so ONNX "
            "Runtime adds each pair of uint8 x int8 products into a saturating int16, and "
            f"this file's 8-bit weights overflow it ({found.summary()}): its labels would "
            "be silently wrong here (CamVid val: 52-60 mIoU instead of 62). Use the fp32 "
            "model, or an int8 file with 7-bit weights (`textseg quantize`, the default "
            "since textseg 0.4; the shipped textseg_default_int8*.onnx are)", policy, report)
