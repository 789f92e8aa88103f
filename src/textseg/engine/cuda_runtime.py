"""The few CUDA runtime calls the TensorRT backend needs, without torch or pycuda.

TensorRT's Python API leaves device memory to the caller. This uses NVIDIA's `cuda-python`
bindings (``cuda.bindings.runtime``, or the older ``cuda.cudart``) when importable, else the
CUDA runtime library itself through ctypes (``libcudart.so``, which the TensorRT wheels and
JetPack ship). Only: device facts, malloc/free, pinned host buffers (cudaMallocHost: async
copies from pageable memory are staged and synchronous), async host<->device copies and one
stream.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from typing import Protocol

import numpy as np


class CudaUnavailable(RuntimeError):
    """No usable CUDA runtime or no GPU on this machine."""


class CudaRuntime(Protocol):
    source: str

    def device_count(self) -> int: ...
    def device_name(self, device: int = 0) -> str: ...
    def compute_capability(self, device: int = 0) -> tuple[int, int]: ...
    def malloc(self, nbytes: int) -> int: ...
    def free(self, pointer: int) -> None: ...
    def stream_create(self) -> int: ...
    def stream_destroy(self, stream: int) -> None: ...
    def stream_synchronize(self, stream: int) -> None: ...
    def copy_to_device(self, device: int, host: np.ndarray, stream: int) -> None: ...
    def copy_to_host(self, host: np.ndarray, device: int, stream: int) -> None: ...
    def host_array(self, shape: tuple[int, ...]) -> np.ndarray: ...
    def free_host_array(self, array: np.ndarray) -> None: ...


def _pinned_view(pointer: int, shape: tuple[int, ...]) -> np.ndarray:
    """A uint8 numpy array over `pointer` (page-locked host memory from cudaMallocHost)."""
    count = int(np.prod(shape))
    buffer = (ctypes.c_uint8 * max(1, count)).from_address(pointer)
    return np.ctypeslib.as_array(buffer)[:count].reshape(shape)


_HOST_TO_DEVICE, _DEVICE_TO_HOST = 1, 2  # cudaMemcpyKind
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76  # cudaDeviceAttr


def _check_host_array(array: np.ndarray) -> None:
    if not array.flags.c_contiguous:
        raise ValueError("host buffers for CUDA copies must be C-contiguous")


class _CudaPython:
    """NVIDIA cuda-python bindings; every call returns (error, values...)."""

    def __init__(self, cudart) -> None:
        self._rt = cudart
        self.source = f"cuda-python ({cudart.__name__})"
        self._streams: dict[int, object] = {}

    def _call(self, result, what: str):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            _, text = self._rt.cudaGetErrorString(err)
            raise CudaUnavailable(f"CUDA {what} failed: {text.decode(errors='replace')}")
        return values[0] if len(values) == 1 else values

    def device_count(self) -> int:
        return int(self._call(self._rt.cudaGetDeviceCount(), "cudaGetDeviceCount"))

    def _properties(self, device: int):
        return self._call(self._rt.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")

    def device_name(self, device: int = 0) -> str:
        name = self._properties(device).name
        return (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name))

    def compute_capability(self, device: int = 0) -> tuple[int, int]:
        props = self._properties(device)
        return int(props.major), int(props.minor)

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self._rt.cudaMalloc(max(1, nbytes)), "cudaMalloc"))

    def free(self, pointer: int) -> None:
        self._call(self._rt.cudaFree(pointer), "cudaFree")

    def stream_create(self) -> int:
        stream = self._call(self._rt.cudaStreamCreate(), "cudaStreamCreate")
        handle = int(stream)
        self._streams[handle] = stream  # the binding object owns nothing, but keep it alive
        return handle

    def stream_destroy(self, stream: int) -> None:
        self._call(self._rt.cudaStreamDestroy(self._streams.pop(stream, stream)),
                   "cudaStreamDestroy")

    def stream_synchronize(self, stream: int) -> None:
        self._call(self._rt.cudaStreamSynchronize(self._streams.get(stream, stream)),
                   "cudaStreamSynchronize")

    def copy_to_device(self, device: int, host: np.ndarray, stream: int) -> None:
        _check_host_array(host)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self._rt.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes, kind,
                                            self._streams.get(stream, stream)), "copy to GPU")

    def copy_to_host(self, host: np.ndarray, device: int, stream: int) -> None:
        _check_host_array(host)
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self._rt.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes, kind,
                                            self._streams.get(stream, stream)), "copy to host")

    def host_array(self, shape: tuple[int, ...]) -> np.ndarray:
        nbytes = max(1, int(np.prod(shape)))
        pointer = int(self._call(self._rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        return _pinned_view(pointer, shape)

    def free_host_array(self, array: np.ndarray) -> None:
        self._call(self._rt.cudaFreeHost(array.ctypes.data), "cudaFreeHost")


class _CudaCtypes:
    """libcudart through ctypes: stable C entry points, no Python CUDA package needed."""

    def __init__(self, library: ctypes.CDLL, path: str) -> None:
        self._lib = library
        self.source = f"ctypes ({path})"
        lib = library
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaGetErrorString.argtypes = [ctypes.c_int]
        lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.cudaFree.argtypes = [ctypes.c_void_p]
        lib.cudaMallocHost.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        lib.cudaFreeHost.argtypes = [ctypes.c_void_p]
        lib.cudaMemcpyAsync.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                        ctypes.c_int, ctypes.c_void_p]
        lib.cudaStreamCreate.argtypes = [ctypes.POINTER(ctypes.c_void_p)]
        lib.cudaStreamDestroy.argtypes = [ctypes.c_void_p]
        lib.cudaStreamSynchronize.argtypes = [ctypes.c_void_p]
        lib.cudaGetDeviceCount.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.cudaDeviceGetAttribute.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int,
                                               ctypes.c_int]
        # CUDA 12 renamed the symbol (the struct grew); `name` is the first field in both.
        self._get_properties = getattr(lib, "cudaGetDeviceProperties_v2", None) or \
            lib.cudaGetDeviceProperties
        self._get_properties.argtypes = [ctypes.c_void_p, ctypes.c_int]

    def _check(self, err: int, what: str) -> None:
        if err != 0:
            text = self._lib.cudaGetErrorString(err) or b"unknown error"
            raise CudaUnavailable(f"CUDA {what} failed: {text.decode(errors='replace')}")

    def device_count(self) -> int:
        count = ctypes.c_int(0)
        self._check(self._lib.cudaGetDeviceCount(ctypes.byref(count)), "cudaGetDeviceCount")
        return count.value

    def device_name(self, device: int = 0) -> str:
        buffer = ctypes.create_string_buffer(8192)  # far larger than cudaDeviceProp
        self._check(self._get_properties(buffer, device), "cudaGetDeviceProperties")
        return buffer.raw[:256].split(b"\0", 1)[0].decode(errors="replace")

    def compute_capability(self, device: int = 0) -> tuple[int, int]:
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        self._check(self._lib.cudaDeviceGetAttribute(ctypes.byref(major), _ATTR_CC_MAJOR,
                                                     device), "cudaDeviceGetAttribute")
        self._check(self._lib.cudaDeviceGetAttribute(ctypes.byref(minor), _ATTR_CC_MINOR,
                                                     device), "cudaDeviceGetAttribute")
        return major.value, minor.value

    def malloc(self, nbytes: int) -> int:
        pointer = ctypes.c_void_p()
        self._check(self._lib.cudaMalloc(ctypes.byref(pointer), max(1, nbytes)), "cudaMalloc")
        return int(pointer.value)

    def free(self, pointer: int) -> None:
        self._check(self._lib.cudaFree(ctypes.c_void_p(pointer)), "cudaFree")

    def stream_create(self) -> int:
        stream = ctypes.c_void_p()
        self._check(self._lib.cudaStreamCreate(ctypes.byref(stream)), "cudaStreamCreate")
        return int(stream.value or 0)

    def stream_destroy(self, stream: int) -> None:
        self._check(self._lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def stream_synchronize(self, stream: int) -> None:
        self._check(self._lib.cudaStreamSynchronize(ctypes.c_void_p(stream)),
                    "cudaStreamSynchronize")

    def copy_to_device(self, device: int, host: np.ndarray, stream: int) -> None:
        _check_host_array(host)
        self._check(self._lib.cudaMemcpyAsync(device, host.ctypes.data, host.nbytes,
                                              _HOST_TO_DEVICE, ctypes.c_void_p(stream)),
                    "copy to GPU")

    def copy_to_host(self, host: np.ndarray, device: int, stream: int) -> None:
        _check_host_array(host)
        self._check(self._lib.cudaMemcpyAsync(host.ctypes.data, device, host.nbytes,
                                              _DEVICE_TO_HOST, ctypes.c_void_p(stream)),
                    "copy to host")

    def host_array(self, shape: tuple[int, ...]) -> np.ndarray:
        pointer = ctypes.c_void_p()
        self._check(self._lib.cudaMallocHost(ctypes.byref(pointer),
                                             max(1, int(np.prod(shape)))), "cudaMallocHost")
        return _pinned_view(int(pointer.value), shape)

    def free_host_array(self, array: np.ndarray) -> None:
        self._check(self._lib.cudaFreeHost(ctypes.c_void_p(array.ctypes.data)),
                    "cudaFreeHost")


def _cudart_candidates() -> list[str]:
    names = ["libcudart.so", "libcudart.so.13", "libcudart.so.12", "libcudart.so.11.0"]
    found = ctypes.util.find_library("cudart")
    if found:
        names.insert(0, found)
    # pip's CUDA runtime wheels (pulled in by the tensorrt wheels): nvidia-cuda-runtime for
    # CUDA 13 keeps every library in nvidia/cu13/lib, the -cu12/-cu11 wheels in
    # nvidia/cuda_runtime/lib.
    for base in sys.path:
        for folder in (("nvidia", "cu13", "lib"), ("nvidia", "cuda_runtime", "lib")):
            names += sorted(glob.glob(os.path.join(base, *folder, "libcudart.so*")))
    names += sorted(glob.glob("/usr/local/cuda*/lib64/libcudart.so*"))
    return names


def load_cuda_runtime() -> CudaRuntime:
    """cuda-python when importable, else libcudart via ctypes; CudaUnavailable otherwise."""
    for module in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            cudart = __import__(module, fromlist=["_"])
        except ImportError:
            continue
        return _CudaPython(cudart)
    tried = []
    for name in _cudart_candidates():
        try:
            return _CudaCtypes(ctypes.CDLL(name), name)
        except OSError:
            tried.append(name)
    raise CudaUnavailable(
        "no CUDA runtime found: install cuda-python (pip install cuda-python) or the CUDA "
        f"runtime library (tried {', '.join(dict.fromkeys(tried))})")
