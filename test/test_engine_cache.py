"""Engine cache keys, sidecars and the reuse / rebuild / refuse decisions, on real files
(no TensorRT needed: engines here are arbitrary bytes, which is all the cache sees)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import threading
import time

import pytest

from textseg.engine.engine_cache import (
    EngineCacheError,
    EngineKey,
    EngineRecord,
    PlatformFacts,
    build_lock,
    check_cached,
    default_cache_dir,
    engine_filename,
    find_stale,
    list_engines,
    plan_engine,
    read_record,
    sidecar_path,
    store_engine,
)

ONNX_SHA = hashlib.sha256(b"model").hexdigest()
ORIN = PlatformFacts("10.3.0", "Orin", "8.7")
RTX = PlatformFacts("10.5.0", "NVIDIA GeForce RTX 4090", "8.9")
METADATA = {"textseg.contract_version": "1"}


def _key(facts=ORIN, precision="fp16", size=(720, 1280), calibration="",
         onnx_sha=ONNX_SHA) -> EngineKey:
    return EngineKey.for_platform(onnx_sha, facts, precision, size, calibration)


def _record(key: EngineKey) -> EngineRecord:
    return EngineRecord(key=key, engine_sha256="", engine_size=0, model_metadata=METADATA,
                        has_confidence=False, onnx_path="/models/m.onnx", build_seconds=12.0)


def _store(cache, key, payload=b"serialized engine bytes", stem="m"):
    path = cache / engine_filename(stem, key)
    return path, store_engine(path, payload, _record(key))


def test_key_fields_and_digest_are_stable():
    key = _key()
    assert key.input_size == (720, 1280)
    assert key.platform == ORIN
    assert key.digest() == _key().digest()
    assert len(key.digest()) == 64
    for other in (_key(RTX), _key(precision="fp32"), _key(size=(720, 960)),
                  _key(onnx_sha=hashlib.sha256(b"other").hexdigest()),
                  _key(precision="int8", calibration="c" * 64)):
        assert other.digest() != key.digest()
        assert engine_filename("m", other) != engine_filename("m", key)


def test_an_int8_key_without_calibration_is_a_qdq_model():
    """Q/DQ int8 models carry their scales: the onnx sha256 is the whole identity."""
    assert _key(precision="int8").calibration_sha256 == ""


def test_key_round_trips_through_a_dict():
    key = _key(precision="int8", calibration="a" * 64)
    assert EngineKey.from_dict(json.loads(json.dumps(key.to_dict()))) == key


@pytest.mark.parametrize("kwargs, message", [
    ({"precision": "fp8"}, "precision 'fp8'"),
    ({"size": (0, 1280)}, "not positive"),
    ({"calibration": "c" * 64}, "takes no calibration images"),
    ({"onnx_sha": "abc"}, "sha256 hex digest"),
])
def test_bad_keys_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _key(**kwargs)


def test_differences_read_from_the_cached_engine_to_what_is_needed_now():
    cached = _key(RTX, size=(720, 960))
    diffs = _key().differences(cached)
    assert "TensorRT version 10.5.0 -> 10.3.0" in diffs
    assert "GPU NVIDIA GeForce RTX 4090 -> Orin" in diffs
    assert "compute capability 8.9 -> 8.7" in diffs
    assert "input width 960 -> 1280" in diffs
    assert _key().differences(_key()) == []


def test_filename_is_safe_and_readable():
    name = engine_filename("my model/../x", _key())
    assert "/" not in name and name.startswith("my_model____x.fp16.1280x720.")
    assert name.endswith(".engine")


def test_sidecar_round_trip(tmp_path):
    path, record = _store(tmp_path, _key())
    assert sidecar_path(path).is_file()
    again = read_record(path)
    assert again == record
    assert again.engine_size == len(b"serialized engine bytes")
    assert again.engine_sha256 == hashlib.sha256(b"serialized engine bytes").hexdigest()
    assert again.created.endswith("Z")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_restart_reuses_the_cached_engine(tmp_path):
    key = _key()
    first = plan_engine(tmp_path, "m", key, allow_build=True)
    assert first.action == "build" and first.reason == "no cached engine"
    _store(tmp_path, key)
    second = plan_engine(tmp_path, "m", key, allow_build=False)
    assert second.action == "reuse"
    assert second.engine_path == first.engine_path
    assert second.record.key == key


def test_missing_engine_with_building_forbidden_says_how_to_fix_it(tmp_path):
    with pytest.raises(EngineCacheError) as info:
        plan_engine(tmp_path, "m", _key(precision="int8", calibration="c" * 64),
                    allow_build=False, model_hint="/models/m.onnx")
    message = str(info.value)
    assert "no cached engine" in message
    assert "textseg bake /models/m.onnx --precision int8 --size 1280x720 --calibration DIR" \
        in message
    assert "engine_build: auto" in message


def test_stale_engine_from_another_tensorrt_and_gpu_is_rebuilt_and_explained(tmp_path):
    _store(tmp_path, _key(RTX))  # baked on a workstation, copied to the vehicle
    plan = plan_engine(tmp_path, "m", _key(ORIN), allow_build=True)
    assert plan.action == "build"
    assert "is stale" in plan.reason
    assert "TensorRT version 10.5.0 -> 10.3.0" in plan.reason
    with pytest.raises(EngineCacheError, match="GPU NVIDIA GeForce RTX 4090 -> Orin"):
        plan_engine(tmp_path, "m", _key(ORIN), allow_build=False)


def test_stale_engine_of_an_updated_onnx_file_is_explained(tmp_path):
    _store(tmp_path, _key(onnx_sha=hashlib.sha256(b"old weights").hexdigest()))
    plan = plan_engine(tmp_path, "m", _key(), allow_build=True)
    assert "ONNX file (sha256)" in plan.reason
    assert find_stale(tmp_path, _key(), "other_model") == []


def test_corrupt_engine_is_detected(tmp_path):
    key = _key()
    path, _ = _store(tmp_path, key)
    data = bytearray(path.read_bytes())
    data[3] ^= 0xFF
    path.write_bytes(bytes(data))
    plan = plan_engine(tmp_path, "m", key, allow_build=True)
    assert plan.action == "build"
    assert "corrupt" in plan.reason
    with pytest.raises(EngineCacheError, match="corrupt"):
        plan_engine(tmp_path, "m", key, allow_build=False)


def test_truncated_engine_is_detected(tmp_path):
    key = _key()
    path, _ = _store(tmp_path, key)
    path.write_bytes(path.read_bytes()[:5])
    record, problem = check_cached(path, key)
    assert record is None and "truncated" in problem


@pytest.mark.parametrize("sidecar", [None, "", "{not json", "[]", '{"key": {}}',
                                     '{"key": {"precision": "fp16"}, "engine_size": 1}'])
def test_missing_or_broken_sidecar_means_rebuild(tmp_path, sidecar):
    key = _key()
    path, _ = _store(tmp_path, key)
    if sidecar is None:
        sidecar_path(path).unlink()
    else:
        sidecar_path(path).write_text(sidecar)
    plan = plan_engine(tmp_path, "m", key, allow_build=True)
    assert plan.action == "build"
    assert "sidecar" in plan.reason


def test_sidecar_describing_another_engine_is_not_trusted(tmp_path):
    key = _key()
    path, _ = _store(tmp_path, key)
    other = _record(_key(RTX))
    sidecar_path(path).write_bytes(other.to_json())
    record, problem = check_cached(path, key)
    assert record is None and "built for something else" in problem


def test_list_engines_reports_good_and_bad(tmp_path):
    good, _ = _store(tmp_path, _key())
    bad, _ = _store(tmp_path, _key(size=(360, 480)))
    bad.write_bytes(b"x")
    orphan = tmp_path / "orphan.engine"
    orphan.write_bytes(b"y")
    entries = {p.name: (r, problem) for p, r, problem in list_engines(tmp_path)}
    assert entries[good.name][1] is None
    assert "truncated" in entries[bad.name][1]
    assert entries[orphan.name][0] is None and "no sidecar" in entries[orphan.name][1]
    assert list_engines(tmp_path / "absent") == []


def test_default_cache_dir_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TEXTSEG_ENGINE_CACHE", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TEXTSEG_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "textseg" / "engines"


def test_build_lock_serialises_builders_in_threads(tmp_path):
    engine = tmp_path / "m.engine"
    inside, overlaps = [], []

    def builder():
        with build_lock(engine):
            if inside:
                overlaps.append(True)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=builder) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not overlaps


def _hold_lock(path, ready, release):
    with build_lock(path):
        ready.set()
        release.wait(10)


def test_build_lock_times_out_with_a_clear_message_across_processes(tmp_path):
    engine = tmp_path / "m.engine"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(engine, ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(EngineCacheError, match="another process is still building"):
            with build_lock(engine, timeout=0.3):
                pass
    finally:
        release.set()
        holder.join(10)
    with build_lock(engine, timeout=1.0):  # free again
        pass


def test_batch_profiles_are_part_of_the_key():
    batched = EngineKey.for_platform(ONNX_SHA, ORIN, "fp16", (720, 1280), max_batch=4)
    assert batched.digest() != _key().digest()
    assert ".b4." in engine_filename("m", batched) and ".b" not in engine_filename("m", _key())
    assert "batch 1-4" in batched.describe()
    assert "max batch 1 -> 4" in batched.differences(_key())
    assert EngineKey.from_dict(json.loads(json.dumps(batched.to_dict()))) == batched


def test_keys_from_before_batch_profiles_still_read_and_keep_their_digest():
    """A sidecar written before `max_batch` existed is a one-frame engine, and its cached
    file name (from the digest) is unchanged, so an upgrade does not rebuild every engine."""
    old = _key().to_dict()
    del old["max_batch"]
    key = EngineKey.from_dict(old)
    assert key.max_batch == 1
    canonical = json.dumps(old, sort_keys=True, separators=(",", ":"))
    assert key.digest() == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize("max_batch", [0, 17, "2"])
def test_bad_batch_sizes_are_refused(max_batch):
    with pytest.raises(ValueError, match="max_batch"):
        EngineKey(ONNX_SHA, "10.3.0", "Orin", "8.7", "fp16", 720, 1280, max_batch=max_batch)
