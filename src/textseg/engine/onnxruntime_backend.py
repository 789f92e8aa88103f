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
    ModelInfo,
)
from textseg.engine.graph_prune import without_output
from textseg.engine.qdq_cpu import uint8_activations
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
                 self_check: str = "refuse", report=None) -> None:
        """`self_check`: refuse (default) to open a model whose stored self-check fails here
        (or an int8 file whose sums can saturate on this CPU), warn through `report`, or off."""
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
        data = path.read_bytes()  # read once: checked, rewritten and pruned below
        on_cpu = bool(chosen) and chosen[0] == "CPUExecutionProvider"
        if on_cpu and self_check != "off":
            _refuse_saturating_int8(data, path, self_check, report)
        try:
            if on_cpu:
                # A Q/DQ int8 model runs every convolution in int8 on the CPU only with its
                # activations as uint8 (textseg.engine.qdq_cpu: the same numbers, the file
                # unchanged); a float model is left as it is.
                data, self.uint8_activations = uint8_activations(data)
            # Frames that want labels only run a graph without the confidence's nodes
            # (textseg.engine.graph_prune); the whole graph opens on the first confidence.
            labels_only, self.pruned_nodes = without_output(data, CONFIDENCE_OUTPUT)
        except ValueError:
            data = None  # not readable as ONNX: InferenceSession says why below
        self._options, self._providers = options, chosen
        self._whole_model = data if data is not None else str(path)
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
        self.info = ModelInfo.from_metadata(
            self.session.get_modelmeta().custom_metadata_map, source=str(path))
        self.has_confidence = self._check_interface(path) or self.pruned_nodes > 0
        self.self_check: SelfCheckResult | None = None
        self.self_check_note = "off"
        if self_check != "off":
            self._run_self_check(path, self_check, report, data)

    def _run_self_check(self, path: Path, policy: str, report, data: bytes | None) -> None:
        from textseg.engine.tensorrt_rules import model_precision

        metadata = self.session.get_modelmeta().custom_metadata_map
        stored = read_self_check(metadata, str(path))
        if stored is None:
            self.self_check_note = NOT_STORED
            return
        precision = model_precision(data if data is not None else path)
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

    def _check_interface(self, path: Path) -> bool:
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)":
            found = [(i.name, i.type) for i in inputs]
            raise ContractError(f"{path}: expected one uint8 input '{INPUT_NAME}', found {found}")
        shape = inputs[0].shape
        if len(shape) != 4 or shape[3] != 3 or (isinstance(shape[0], int) and shape[0] != 1):
            raise ContractError(f"{path}: input '{INPUT_NAME}' must be [N, H, W, 3] with N "
                                f"dynamic or 1, is {shape}")
        # Models exported before the batch axis became dynamic take one frame per inference.
        self.max_batch = 1 if shape[0] == 1 else DYNAMIC_MAX_BATCH
        outputs = {o.name: o for o in self.session.get_outputs()}
        labels = outputs.get(LABELS_OUTPUT)
        if labels is None or labels.type != "tensor(uint8)" or len(labels.shape) != 3:
            raise ContractError(f"{path}: expected a uint8 [N, H, W] output '{LABELS_OUTPUT}'")
        return CONFIDENCE_OUTPUT in outputs

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


def _refuse_saturating_int8(data: bytes, path: Path, policy: str, report) -> None:
    """An int8 file whose uint8 x int8 sums can overflow on this CPU (x86 without VNNI:
    textseg.engine.int8_saturation) is refused, or reported, before it computes wrong labels."""
    from textseg.cpu import cpu_features
    from textseg.engine.int8_saturation import saturation_report

    cpu = cpu_features()
    if not cpu.int8_saturates or b"QuantizeLinear" not in data:
        return
    try:
        found = saturation_report(data)
    except ValueError:
        return  # not readable as ONNX: InferenceSession says why
    if found.could_saturate:
        act(f"{path}: this CPU ({cpu.describe()}) has no AVX512-VNNI / AVX-VNNI, so ONNX "
            "Runtime adds each pair of uint8 x int8 products into a saturating int16, and "
            f"this file's 8-bit weights overflow it ({found.summary()}): its labels would "
            "be silently wrong here (CamVid val: 52-60 mIoU instead of 62). Use the fp32 "
            "model, or an int8 file with 7-bit weights (`textseg quantize`, the default "
            "since textseg 0.4; the shipped textseg_default_int8*.onnx are)", policy, report)
