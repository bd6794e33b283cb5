"""Describe the machine a benchmark ran on: CPU, memory, GPU, driver and the versions of every library involved.

Versions come from the installed distributions' metadata, so describing the machine imports neither torch nor
TensorRT; the GPU is queried through torch (or cuda-python) only when the benchmark runs on CUDA.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["describe_device", "cpu_model", "physical_cores", "library_versions", "precision_isa"]

# Distribution names to report, first installed one wins (the package name differs between builds).
LIBRARIES: dict[str, tuple[str, ...]] = {
    "rtdetr-deploy": ("rtdetr-deploy",),
    "numpy": ("numpy",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python"),
    "torch": ("torch",),
    "torchvision": ("torchvision",),
    "tensorrt": ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"),
    "openvino": ("openvino",),
    "cuda-python": ("cuda-python",),
}
SIMD_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16"
)  # fmt: skip


def precision_isa(simd: list[str] | tuple[str, ...] | set[str]) -> str:
    """The CPU instructions that decide INT8 and BF16 speed, present or missing, in one phrase.

    INT8 matrix products run on VNNI (AVX-512 VNNI or AVX-VNNI) or AMX; without them, on AVX2 (``vpmaddubsw``), INT8
    gains far less over FP32. BF16 needs AVX512_BF16 or AMX, else it is emulated. So two machines with the same CPU
    name can differ by 1.5x in INT8 speed-up.

    Args:
        simd: ``/proc/cpuinfo`` flag names (``describe_device()["cpu"]["simd"]``).

    Returns:
        e.g. ``"AVX2, AVX-512 VNNI, AVX512_BF16, AMX"`` or ``"AVX2, no VNNI, no BF16"``.
    """
    flags = set(simd)
    parts = ["AVX2" if "avx2" in flags else "no AVX2"]
    vnni = [label for flag, label in (("avx512_vnni", "AVX-512 VNNI"), ("avx_vnni", "AVX-VNNI")) if flag in flags]
    parts.append(vnni[0] if vnni else "no VNNI")
    parts.append("AVX512_BF16" if "avx512_bf16" in flags else "no BF16" if "amx_bf16" not in flags else "")
    if "amx_tile" in flags:
        parts.append("AMX")
    return ", ".join(part for part in parts if part)


def _cpuinfo() -> list[dict[str, str]]:
    """``/proc/cpuinfo`` as one dict per logical CPU (empty off Linux)."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return []
    entries, current = [], {}
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            if current:
                entries.append(current)
            current = {}
            continue
        key, _, value = line.partition(":")
        current[key.strip()] = value.strip()
    if current:
        entries.append(current)
    return entries


def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), or what ``platform`` knows."""
    for entry in _cpuinfo():
        if entry.get("model name"):
            return entry["model name"]
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int:
    """Physical cores (what ONNX Runtime and torch size their thread pools by); logical CPUs if unknown."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
        if count:
            return int(count)
    except ImportError:
        pass
    cores = {(e.get("physical id", "0"), e.get("core id", e.get("processor"))) for e in _cpuinfo()}
    return len(cores) or os.cpu_count() or 1


def _family_model(entries: list[dict[str, str]]) -> str | None:
    """``"family/model/stepping"`` from ``/proc/cpuinfo``: names the microarchitecture when the model name is vague."""
    if not entries or "cpu family" not in entries[0]:
        return None
    first = entries[0]
    return f"{first['cpu family']}/{first.get('model', '?')}/{first.get('stepping', '?')}"


def _memory_gib() -> float | None:
    try:
        import psutil

        return round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    path = Path("/proc/meminfo")
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    return None


def library_versions() -> dict[str, str | None]:
    """Installed version of each library a benchmark may involve (``None``: not installed)."""
    versions: dict[str, str | None] = {}
    for name, distributions in LIBRARIES.items():
        versions[name] = None
        for distribution in distributions:
            try:
                versions[name] = importlib.metadata.version(distribution)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    versions["python"] = platform.python_version()
    return versions


def _nvidia_smi() -> dict[str, str]:
    """Driver version and GPU name from ``nvidia-smi`` (empty when it is not installed or fails)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    first = out.strip().splitlines()[0] if out.strip() else ""
    name, _, driver = first.partition(",")
    return {"name": name.strip(), "driver": driver.strip()} if driver else {}


def _gpu(index: int) -> dict[str, Any]:
    """Name, compute capability, memory, CUDA/cuDNN and driver versions of CUDA device ``index``."""
    info: dict[str, Any] = {"index": index}
    smi = _nvidia_smi()
    if smi:
        info["driver"] = smi["driver"]
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(index)
        info.update(
            name=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            memory_gib=round(props.total_memory / 2**30, 1),
            cuda_runtime=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
        )
    elif smi:
        info["name"] = smi["name"]
    return info


def describe_device(device: str = "cpu") -> dict[str, Any]:
    """A JSON-ready description of the machine, the device the benchmark uses and the library versions.

    Args:
        device: ``"cpu"`` or ``"cuda:N"``; the GPU is described only for CUDA devices.

    Returns:
        ``device``, ``cpu`` (model, physical and logical cores, SIMD flags, virtual machine or not), ``memory_gib``,
        ``os``, ``load_average`` (1, 5, 15 minutes, at the time of the call: other work on the machine skews timings),
        ``gpu`` (``None`` on CPU) and ``versions``.
    """
    flags = set()
    entries = _cpuinfo()
    if entries:
        flags = set(entries[0].get("flags", "").split())
    load = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    gpu = None
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        gpu = _gpu(index)
    return {
        "device": device,
        "cpu": {
            "model": cpu_model(),
            "family_model_stepping": _family_model(entries),
            "physical_cores": physical_cores(),
            "logical_cpus": os.cpu_count(),
            "simd": [flag for flag in SIMD_FLAGS if flag in flags],
            "virtual_machine": "hypervisor" in flags,
        },
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "load_average": load,
        "gpu": gpu,
        "versions": library_versions(),
    }
