"""What the benchmarks print about the machine, so that a figure can be read against the hardware it came from."""

import os
import platform

import torch

BF16_FLAGS = ("avx512_bf16", "amx_bf16", "avx_vnni", "avx512f", "avx2")


def cpu_model_and_flags() -> tuple[str, set[str]]:
    """The CPU's model name and instruction-set flags from /proc/cpuinfo (empty where it is absent)."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and not model:
                    model = value.strip()
                elif key.strip() == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or "unknown", flags


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average: above the core count, other processes took CPU from the figures."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def machine_summary() -> dict[str, object]:
    """CPU model, cores, torch version and threads, and whether the CPU computes bfloat16 natively."""
    model, flags = cpu_model_and_flags()
    return {
        "cpu": model,
        "cores": usable_cpus(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": [flag for flag in BF16_FLAGS if flag in flags],
        "onednn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "load_average_1min": load_average(),
    }


def print_machine() -> dict[str, object]:
    summary = machine_summary()
    flags = ", ".join(summary["cpu_flags"]) or "none of " + ", ".join(BF16_FLAGS)
    print(
        f"machine: {summary['cpu']}, {summary['cores']} cores, torch {summary['torch']} "
        f"({summary['threads']} threads, {summary['cpu_capability']}), flags: {flags}, "
        f"oneDNN bf16: {summary['onednn_bf16']}, load {summary['load_average_1min']}",
        flush=True,
    )
    return summary
