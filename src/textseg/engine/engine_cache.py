"""The TensorRT engine cache: which engine fits this machine, and when to build one.

ROS-free and TensorRT-free, so every decision is unit-tested on machines without a GPU.

A serialized engine only runs on the TensorRT version and GPU model it was built with, for the
precision and input size it was built for. Each cached engine therefore has a key
(:class:`EngineKey`: ONNX sha256, TensorRT version, GPU name, compute capability, precision,
input size and, for int8, the calibration images' sha256) and a JSON sidecar beside it
(``<engine>.json``, :class:`EngineRecord`) holding the key, the engine's own sha256 and size,
and the model metadata. Engines and sidecars are written atomically (engine first), so a
crash mid-write leaves either nothing or a complete pair.

Decisions (:func:`plan_engine`): a restart with the same key reuses the engine; a missing,
truncated, corrupt or stale engine is rebuilt, or, when building is not allowed, refused with
an error that says what differs and how to fix it. Never a silent crash, never a rebuild on
every start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from textseg.fileio import atomic_write_bytes

ENGINE_FORMAT_VERSION = 1
PRECISIONS = ("fp16", "fp32", "int8")
ENGINE_SUFFIX = ".engine"
MAX_BATCH = 16  # batch profiles an engine may carry (cameras served by one inference)
SIDECAR_SUFFIX = ".json"


class EngineCacheError(RuntimeError):
    """No usable engine, and building one is not allowed or not possible."""


@dataclass(frozen=True)
class PlatformFacts:
    """What an engine is tied to on this machine."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.6"

    def describe(self) -> str:
        return (f"TensorRT {self.tensorrt_version} on {self.gpu_name} "
                f"(compute capability {self.compute_capability})")


@dataclass(frozen=True)
class EngineKey:
    """Everything that makes a serialized engine usable or not."""

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    input_height: int
    input_width: int
    # int8 from an fp32 model (TensorRT 10's calibrator) only: the calibration images change
    # the engine. A Q/DQ model carries its scales, so its onnx_sha256 covers them.
    calibration_sha256: str = ""
    format_version: int = ENGINE_FORMAT_VERSION
    # One optimisation profile per batch size 1..max_batch (several cameras, one inference).
    max_batch: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.precision not in PRECISIONS:
            problems.append(f"precision '{self.precision}' is not one of {PRECISIONS}")
        if not (isinstance(self.input_height, int) and isinstance(self.input_width, int)
                and self.input_height > 0 and self.input_width > 0):
            problems.append(f"input size {self.input_width}x{self.input_height} is not positive")
        if self.precision != "int8" and self.calibration_sha256:
            problems.append(f"a {self.precision} engine takes no calibration images")
        if not (isinstance(self.max_batch, int) and 1 <= self.max_batch <= MAX_BATCH):
            problems.append(f"max_batch {self.max_batch} is not in 1..{MAX_BATCH}")
        if len(self.onnx_sha256) != 64:
            problems.append("onnx_sha256 must be a sha256 hex digest")
        if problems:
            raise ValueError("invalid engine key: " + "; ".join(problems))

    @classmethod
    def for_platform(cls, onnx_sha256: str, facts: PlatformFacts, precision: str,
                     input_size: tuple[int, int], calibration_sha256: str = "",
                     max_batch: int = 1) -> EngineKey:
        return cls(onnx_sha256=onnx_sha256, tensorrt_version=facts.tensorrt_version,
                   gpu_name=facts.gpu_name, compute_capability=facts.compute_capability,
                   precision=precision, input_height=int(input_size[0]),
                   input_width=int(input_size[1]), calibration_sha256=calibration_sha256,
                   max_batch=int(max_batch))

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_height, self.input_width

    @property
    def platform(self) -> PlatformFacts:
        return PlatformFacts(self.tensorrt_version, self.gpu_name, self.compute_capability)

    def digest(self) -> str:
        fields_ = asdict(self)
        if self.max_batch == 1:  # keys from before batch profiles keep their digest
            del fields_["max_batch"]
        canonical = json.dumps(fields_, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def describe(self) -> str:
        batches = f", batch 1-{self.max_batch}" if self.max_batch > 1 else ""
        return (f"{self.precision} {self.input_width}x{self.input_height}{batches}, "
                f"{self.platform.describe()}")

    def differences(self, other: EngineKey) -> list[str]:
        """'field other -> self' for every field that differs: with `self` the key needed now
        and `other` a cached engine's, it reads 'what the engine was built for -> now'."""
        labels = {"onnx_sha256": "ONNX file (sha256)", "tensorrt_version": "TensorRT version",
                  "gpu_name": "GPU", "compute_capability": "compute capability",
                  "precision": "precision", "input_height": "input height",
                  "input_width": "input width", "calibration_sha256": "calibration images",
                  "format_version": "engine format", "max_batch": "max batch"}
        out = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if mine != theirs:
                if f.name.endswith("sha256"):
                    mine, theirs = str(mine)[:12] or "-", str(theirs)[:12] or "-"
                out.append(f"{labels[f.name]} {theirs} -> {mine}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EngineKey:
        names = {f.name for f in fields(cls)}
        # Sidecars written before a field existed get its default (max_batch: 1).
        if not isinstance(data, dict) or not names - {"calibration_sha256", "format_version",
                                                      "max_batch"} <= set(data):
            raise ValueError("engine key is incomplete")
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class EngineRecord:
    """The JSON sidecar of one serialized engine."""

    key: EngineKey
    engine_sha256: str
    engine_size: int
    model_metadata: dict[str, str]  # the ONNX metadata_props (contract ModelInfo)
    has_confidence: bool
    onnx_path: str = ""
    build_seconds: float = 0.0
    created: str = ""
    textseg_version: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["key"] = self.key.to_dict()
        return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, text: bytes | str, source: str = "sidecar") -> EngineRecord:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            key = EngineKey.from_dict(data.pop("key", None))
            names = {f.name for f in fields(cls)} - {"key"}
            missing = {"engine_sha256", "engine_size", "model_metadata",
                       "has_confidence"} - set(data)
            if missing:
                raise ValueError(f"missing {sorted(missing)}")
            return cls(key=key, **{k: v for k, v in data.items() if k in names})
        except (ValueError, TypeError) as exc:
            raise EngineCacheError(f"{source} is not a valid engine sidecar: {exc}") from None


@dataclass(frozen=True)
class EnginePlan:
    action: str  # "reuse" or "build"
    engine_path: Path
    reason: str
    record: EngineRecord | None = None  # for "reuse"


def default_cache_dir() -> Path:
    """$TEXTSEG_ENGINE_CACHE, else $XDG_CACHE_HOME/textseg/engines, else ~/.cache/...

    Not the package share folder: on a vehicle that is usually read-only."""
    explicit = os.environ.get("TEXTSEG_ENGINE_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "textseg" / "engines"


def engine_filename(model_stem: str, key: EngineKey) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model_stem) or "model"
    batches = f".b{key.max_batch}" if key.max_batch > 1 else ""
    return (f"{safe}.{key.precision}.{key.input_width}x{key.input_height}{batches}."
            f"{key.digest()[:16]}{ENGINE_SUFFIX}")


def calibration_cache_filename(model_stem: str, key: EngineKey) -> str:
    """The int8 calibration table's name: keyed by what changes the table (the model, the
    calibration images, the input size), not by the TensorRT version or GPU, so a rebuild
    after a TensorRT upgrade or on another GPU of the same model finds it again."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in model_stem) or "model"
    digest = hashlib.sha256(f"{key.onnx_sha256}:{key.calibration_sha256}:"
                            f"{key.input_height}x{key.input_width}".encode()).hexdigest()
    return f"{safe}.{key.input_width}x{key.input_height}.{digest[:16]}.calibration"


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + SIDECAR_SUFFIX)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_record(engine_path: Path) -> EngineRecord:
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise EngineCacheError(
            f"{engine_path} has no sidecar {side.name}: cannot tell which TensorRT version, "
            "GPU, precision and input size it was built for")
    return EngineRecord.from_json(side.read_bytes(), source=str(side))


def verify_engine_file(engine_path: Path, record: EngineRecord) -> str | None:
    """None when the engine file is the one its sidecar describes, else what is wrong."""
    try:
        size = engine_path.stat().st_size
    except OSError:
        return "the engine file is missing"
    if size != record.engine_size:
        return (f"the engine file is truncated or replaced ({size} bytes, its sidecar says "
                f"{record.engine_size})")
    if file_sha256(engine_path) != record.engine_sha256:
        return "the engine file is corrupt (its sha256 differs from the sidecar's)"
    return None


def check_cached(engine_path: Path, key: EngineKey) -> tuple[EngineRecord | None, str | None]:
    """(record, None) when the cached engine at `engine_path` can be used for `key`, else
    (None, the reason it cannot)."""
    if not engine_path.is_file():
        return None, "no cached engine"
    try:
        record = read_record(engine_path)
    except EngineCacheError as exc:
        return None, str(exc)
    if record.key != key:
        return None, ("the cached engine was built for something else: "
                      + "; ".join(key.differences(record.key)))
    problem = verify_engine_file(engine_path, record)
    if problem:
        return None, problem
    return record, None


def find_stale(cache_dir: Path, key: EngineKey, model_stem: str) -> list[tuple[Path, list[str]]]:
    """Cached engines of the same model (same ONNX or same file name stem) whose key differs,
    newest first: why an engine is rebuilt after a TensorRT upgrade or a GPU swap. They are
    left in place (never used for this key; `textseg bake --list` shows them)."""
    stale = []
    if not cache_dir.is_dir():
        return stale
    prefix = engine_filename(model_stem, key).split(".")[0] + "."
    sidecars = sorted(cache_dir.glob(f"*{ENGINE_SUFFIX}{SIDECAR_SUFFIX}"),
                      key=lambda p: p.stat().st_mtime, reverse=True)  # newest first
    for side in sidecars:
        engine = side.with_name(side.name[: -len(SIDECAR_SUFFIX)])
        try:
            record = EngineRecord.from_json(side.read_bytes(), source=str(side))
        except (EngineCacheError, OSError):
            continue
        if record.key == key:
            continue
        if record.key.onnx_sha256 == key.onnx_sha256 or engine.name.startswith(prefix):
            stale.append((engine, key.differences(record.key)))
    return stale


def plan_engine(cache_dir: str | Path, model_stem: str, key: EngineKey,
                allow_build: bool, model_hint: str = "MODEL.onnx") -> EnginePlan:
    """Reuse the cached engine for `key`, or build it, or (building not allowed) raise
    EngineCacheError naming what is missing or stale and how to fix it."""
    cache_dir = Path(cache_dir)
    engine_path = cache_dir / engine_filename(model_stem, key)
    record, problem = check_cached(engine_path, key)
    if record is not None:
        return EnginePlan("reuse", engine_path, "cached engine matches", record)
    reason = problem or "no cached engine"
    stale = find_stale(cache_dir, key, model_stem)
    if stale and problem == "no cached engine":
        closest = min(stale, key=lambda item: len(item[1]))
        reason = (f"the cached engine {closest[0].name} is stale: "
                  + "; ".join(closest[1]))
    if not allow_build:
        raise EngineCacheError(
            f"no usable TensorRT engine for {model_hint} ({key.describe()}) in {cache_dir}: "
            f"{reason}. Build it on this machine with `textseg bake {model_hint} --precision "
            f"{key.precision} --size {key.input_width}x{key.input_height}"
            f"{' --calibration DIR' if key.precision == 'int8' else ''}` or allow building "
            "at start (engine_build: auto)")
    return EnginePlan("build", engine_path, reason)


def store_engine(engine_path: str | Path, engine: bytes, record_without_hash: EngineRecord
                 ) -> EngineRecord:
    """Write engine then sidecar, each atomically; the sidecar gets the engine's hash/size."""
    engine_path = Path(engine_path)
    record = EngineRecord(**{**{f.name: getattr(record_without_hash, f.name)
                                for f in fields(EngineRecord)},
                             "engine_sha256": hashlib.sha256(engine).hexdigest(),
                             "engine_size": len(engine),
                             "created": record_without_hash.created
                             or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    atomic_write_bytes(engine_path, engine)
    atomic_write_bytes(sidecar_path(engine_path), record.to_json())
    return record


def list_engines(cache_dir: str | Path) -> list[tuple[Path, EngineRecord | None, str | None]]:
    """Every engine in the cache with its record, or the reason it is unusable."""
    cache_dir = Path(cache_dir)
    out = []
    if not cache_dir.is_dir():
        return out
    for engine in sorted(cache_dir.glob(f"*{ENGINE_SUFFIX}")):
        try:
            record = read_record(engine)
        except EngineCacheError as exc:
            out.append((engine, None, str(exc)))
            continue
        out.append((engine, record, verify_engine_file(engine, record)))
    return out


@contextlib.contextmanager
def build_lock(engine_path: str | Path, timeout: float | None = None):
    """Exclusive lock per engine file: two nodes starting together build it once; the second
    waits and then finds it cached."""
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = engine_path.with_name(f".{engine_path.name}.lock")
    with open(lock_path, "a+b") as handle:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() > deadline:
                    raise EngineCacheError(
                        f"another process is still building {engine_path.name} "
                        f"(lock {lock_path})") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
