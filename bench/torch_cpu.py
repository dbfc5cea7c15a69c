"""What the PyTorch peers run on, for the benchmarks to print beside
bench_cpuinfo's lines (bench/cpuinfo.h): ATen's CPU capability, the ISA
oneDNN dispatches to (its convolutions), the OpenBLAS core (its matrix
products) and the threads, each read back from the library rather than from
the environment that asks for it (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
OPENBLAS_CORETYPE), so a setting that did not take is seen.

    python3 bench/torch_cpu.py THREADS      prints the line
"""
import ctypes
import os
import subprocess
import sys

import torch


def aten_capability():
    cpu = getattr(torch.backends, "cpu", None)
    if cpu is not None and hasattr(cpu, "get_cpu_capability"):
        return cpu.get_cpu_capability()
    for line in torch.__config__.show().splitlines():  # torch < 2.0
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def onednn_isa():
    """oneDNN names its ISA on its first primitive when ONEDNN_VERBOSE=1: a
    child process runs one small convolution with the same environment."""
    code = ("import torch, torch.nn.functional as F\n"
            "F.conv2d(torch.randn(2, 16, 32, 32), torch.randn(16, 16, 3, 3))\n")
    env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=120).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e})"
    for line in out.splitlines():
        if ",isa:" in line:
            return line.split(",isa:", 1)[1].strip()
    return "unknown (oneDNN printed no ISA)"


def openblas_core():
    try:
        lib = ctypes.CDLL("libopenblas.so.0")  # the one torch loaded, if any
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return "none (no libopenblas.so.0)"


def describe(threads):
    def asked(name):
        return f" ({name}={os.environ[name]})" if os.environ.get(name) else ""
    return (f"pytorch {torch.__version__}: ATen CPU capability {aten_capability()}"
            f"{asked('ATEN_CPU_CAPABILITY')}; oneDNN ISA {onednn_isa()}"
            f"{asked('ONEDNN_MAX_CPU_ISA')}; openblas core {openblas_core()}"
            f"{asked('OPENBLAS_CORETYPE')}; threads {threads}")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    torch.set_num_threads(n)
    print(describe(torch.get_num_threads()))
