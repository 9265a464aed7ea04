"""``benchmark``: how fast a ``.tflite`` model runs on this CPU with LiteRT, how big it is, what ops it has.

The input is filled once with random pixels of the input's type and the model is invoked ``warmup`` times
untimed (the first invocations allocate and pack weights), then ``runs`` times timed one by one. Each result names
the CPU it ran on (:func:`cpu_description`): int8 speed depends on the instruction set far more than float speed
does. XNNPACK, LiteRT's CPU delegate, runs int8 convs with AMX or AVX-512 VNNI / AVX-VNNI dot products where the CPU
has them, about twice as fast as its float kernels; on a CPU with AVX2 only (AMD EPYC Zen 2 / Zen 3, Intel before
Ice Lake) its int8 kernels multiply 16-bit pairs and run about as fast as its float kernels, so an int8 model is
not faster there.

:func:`benchmark_avx2_only` measures how a model runs with the kernels XNNPACK picks on such a CPU, on this one.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from spaghettinet.errors import DataError, SpaghettiError, UsageError
from spaghettinet.io_utils import write_text_atomic
from spaghettinet.stage_files import check_object, check_version, read_json_file

CPUINFO = Path("/proc/cpuinfo")
#: ``/proc/cpuinfo`` flags that decide which int8 kernels XNNPACK uses (AMX, AVX-512 VNNI, AVX-VNNI, else AVX2).
INT8_CPU_FLAGS = ("avx2", "avx512_vnni", "avx_vnni", "amx_int8")


@dataclass
class LatencyResult:
    """Latency of one model at one thread count.

    Args:
        model: the ``.tflite`` path.
        threads: interpreter threads.
        runs: timed invocations.
        median_ms / p90_ms / mean_ms / min_ms: invocation times in milliseconds (wall clock).
        size_bytes: file size.
        input_shape / input_type: the model input (``[1, H, W, 3]``, ``uint8`` or ``float32``).
        op_counts: op name → count.
        cpu_median_ms: median CPU time of the calling thread per invocation, at 1 thread only (None otherwise):
            on a machine shared with other jobs it leaves out the time the benchmark waited for a core.
        cpu: the CPU (:func:`cpu_description`).
        isa_limit: ``"avx2"`` when XNNPACK was limited to AVX2 kernels (:func:`benchmark_avx2_only`), else None.
    """

    model: str
    threads: int
    runs: int
    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    size_bytes: int
    input_shape: list[int]
    input_type: str
    op_counts: dict[str, int]
    cpu_median_ms: float | None = None
    cpu: dict = field(default_factory=dict)
    isa_limit: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> LatencyResult:
        """Read back :meth:`to_dict`'s fields.

        Raises:
            DataError: a missing or unknown field, or a value of the wrong type; naming ``source``.
        """
        names = [item.name for item in fields(cls)]
        required = [
            item.name for item in fields(cls) if item.default is MISSING and item.default_factory is MISSING
        ]
        row = check_object(data, "a latency row", required, names, source)
        for name, kinds in _LATENCY_TYPES.items():
            value = row.get(name)
            if name in row and not (
                (value is None and type(None) in kinds)
                or (isinstance(value, kinds) and not isinstance(value, bool))
            ):
                raise DataError(f"latency row: {name} is {value!r}, not of the type written", source)
        return cls(**{name: row[name] for name in names if name in row})


#: JSON types of each :class:`LatencyResult` field (ints are accepted where floats are written).
_LATENCY_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "threads": (int,),
    "runs": (int,),
    "median_ms": (int, float),
    "p90_ms": (int, float),
    "mean_ms": (int, float),
    "min_ms": (int, float),
    "size_bytes": (int,),
    "input_shape": (list,),
    "input_type": (str,),
    "op_counts": (dict,),
    "cpu_median_ms": (int, float, type(None)),
    "cpu": (dict,),
    "isa_limit": (str, type(None)),
}
#: Format version of ``latency.json`` (0: a plain list of rows).
LATENCY_VERSION = 1
LATENCY_FILE = "latency.json"


@dataclass
class LatencyReport:
    """What ``latency.json`` holds: one :class:`LatencyResult` per exported model (``model`` is the file name).

    Example:
        >>> LatencyReport.from_dict(LatencyReport([]).to_dict()).results
        []
    """

    results: list[LatencyResult] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"version": LATENCY_VERSION, "models": [result.to_dict() for result in self.results]}

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> LatencyReport:
        """Read a ``latency.json`` payload (version 0, a plain list of rows, included).

        Raises:
            DataError: naming ``source`` and what is wrong.
        """
        if isinstance(data, list):
            rows = data
        else:
            if not isinstance(data, dict):
                raise DataError(f"{LATENCY_FILE} is not a JSON object", source)
            check_version(data, LATENCY_FILE, LATENCY_VERSION, source)
            check_object(data, LATENCY_FILE, ("version", "models"), source=source)
            rows = data["models"]
            if not isinstance(rows, list):
                raise DataError(f"{LATENCY_FILE}: models is not a list", source)
        return cls([LatencyResult.from_dict(row, source) for row in rows])

    @classmethod
    def read(cls, path: str | Path) -> LatencyReport:
        return cls.from_dict(read_json_file(path), path)

    def write(self, path: str | Path) -> Path:
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def shipped(self) -> LatencyResult | None:
        """The int8 model's row if there is one, else the first."""
        return min(self.results, key=lambda result: "int8" not in result.model, default=None)


def cpu_description(cpuinfo: Path = CPUINFO) -> dict:
    """The CPU's model name and the ``/proc/cpuinfo`` flags that decide XNNPACK's int8 kernels.

    Args:
        cpuinfo: the file to read (Linux's ``/proc/cpuinfo``).

    Returns:
        ``{"model": name or None, "avx2": bool, "avx512_vnni": bool, "avx_vnni": bool, "amx_int8": bool}``; the
        flags are None where the file is unreadable (another OS).

    Example:
        >>> cpu_description()  # doctest: +SKIP
        {'model': 'AMD EPYC 7B12', 'avx2': True, 'avx512_vnni': False, 'avx_vnni': False, 'amx_int8': False}
    """
    import platform

    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {"model": platform.processor() or None, **dict.fromkeys(INT8_CPU_FLAGS)}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor speaks for all
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name"), **{flag: flag in flags for flag in INT8_CPU_FLAGS}}


def benchmark(
    model_path: str | Path, threads: int = 1, runs: int = 50, warmup: int = 5, seed: int = 0
) -> LatencyResult:
    """Time a ``.tflite`` model with LiteRT on the CPU.

    Args:
        model_path: the ``.tflite`` file.
        threads: CPU threads for the interpreter (≥ 1).
        runs: timed invocations (≥ 1).
        warmup: untimed invocations first.
        seed: seed of the random input.

    Returns:
        :class:`LatencyResult`.

    Raises:
        DataError: the file is missing or not a model LiteRT can load.
        UsageError: threads or runs below 1.

    Example:
        >>> benchmark("exported/model_int8.tflite", threads=2, runs=20).median_ms  # doctest: +SKIP
        9.1
    """
    from ai_edge_litert.interpreter import Interpreter

    from spaghettinet.deploy.edgetpu import list_operators, op_counts

    path = Path(model_path)
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    if runs < 1:
        raise UsageError(f"--runs must be at least 1, got {runs}")
    if not path.is_file():
        raise DataError("no such model file", path)
    flatbuffer = path.read_bytes()
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        counts = op_counts(list_operators(flatbuffer))
    except Exception as exc:  # LiteRT and the flatbuffer reader raise assorted types on a bad file
        raise DataError(f"not a TFLite model LiteRT can load: {exc}", path) from exc
    detail = interpreter.get_input_details()[0]
    rng = np.random.default_rng(seed)
    dtype = np.dtype(detail["dtype"])
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True).astype(dtype)
    else:
        data = rng.uniform(-1.0, 1.0, size=detail["shape"]).astype(dtype)
    interpreter.set_tensor(detail["index"], data)
    for _ in range(max(0, warmup)):
        interpreter.invoke()
    times = np.empty(runs, np.float64)
    cpu_times = np.empty(runs, np.float64)
    for i in range(runs):
        cpu_start = time.thread_time()
        start = time.perf_counter()
        interpreter.invoke()
        times[i] = (time.perf_counter() - start) * 1000.0
        cpu_times[i] = (time.thread_time() - cpu_start) * 1000.0
    return LatencyResult(
        model=str(path),
        threads=threads,
        runs=runs,
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        mean_ms=float(times.mean()),
        min_ms=float(times.min()),
        size_bytes=len(flatbuffer),
        input_shape=[int(v) for v in detail["shape"]],
        input_type=dtype.name,
        op_counts=counts,
        # With one thread XNNPACK computes on the calling thread; with more, workers do part of it.
        cpu_median_ms=float(np.median(cpu_times)) if threads == 1 else None,
        cpu=cpu_description(),
    )


#: Fields of cpuinfo's ``struct cpuinfo_x86_isa`` on x86-64, in order (pytorch/cpuinfo ``include/cpuinfo.h``, the
#: version in ai-edge-litert 2.x: one bool each, 86 bytes). :func:`limit_xnnpack_to_avx2` refuses a library whose
#: ``cpuinfo_isa`` has another size, or whose fields disagree with ``/proc/cpuinfo``.
CPUINFO_X86_ISA_FIELDS: tuple[str, ...] = tuple(
    """rdtscp rdpid sysenter msr clzero clflush clflushopt mwait mwaitx fxsave xsave three_d_now three_d_now_plus
    prefetch prefetchw prefetchwt1 sse3 ssse3 sse4_1 sse4_2 sse4a misaligned_sse avx avxvnni fma3 fma4 xop f16c avx2
    avx512f avx512pf avx512er avx512cd avx512dq avx512bw avx512vl avx512ifma avx512vbmi avx512vbmi2 avx512bitalg
    avx512vpopcntdq avx512vnni avx512bf16 avx512fp16 avx512vp2intersect avx512_4vnniw avx512_4fmaps avx10_1 avx10_2
    amx_bf16 amx_tile amx_int8 amx_fp16 amx_fp8 avx_vnni_int8 avx_vnni_int16 avx_ne_convert hle rtm xtest mpx
    cmpxchg16b clwb movbe lahf_sahf fs_gs_base lzcnt popcnt tbm bmi bmi2 adx aes vaes pclmulqdq vpclmulqdq gfni rdrand
    rdseed sha rng ace ace2 phe pmm lwp""".split()
)
#: cpuinfo field → ``/proc/cpuinfo`` flag, used to check that the field layout is the one above.
_LAYOUT_CHECKS = {
    "sse4_1": "sse4_1",
    "avx": "avx",
    "fma3": "fma",
    "f16c": "f16c",
    "avx2": "avx2",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vnni": "avx512_vnni",
    "amx_int8": "amx_int8",
    "bmi2": "bmi2",
    "popcnt": "popcnt",
    "sha": "sha_ni",
}
#: What an AVX2-only CPU (AMD EPYC Zen 2, Intel Haswell to Coffee Lake) lacks: every AVX-512, AVX10, AMX and VNNI
#: extension, and the vector AES / carry-less multiply / GFNI instructions.
_NOT_ON_AVX2_CPUS = ("avx512", "avx10", "amx", "avxvnni", "avx_vnni", "avx_ne", "vaes", "vpclmulqdq", "gfni")
_LITERT_LIBRARY = "libpywrap_litert_common.so"


def _elf_symbols(path: Path, names: set[str]) -> dict[str, tuple[int, int]]:
    """``name → (value, size)`` from an ELF64 file's ``.symtab`` (the local symbols ``nm`` lists)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    (section_offset,) = struct.unpack_from("<Q", data, 0x28)
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = [
        struct.unpack_from("<IIQQQQIIQQ", data, section_offset + i * entry_size) for i in range(count)
    ]
    found: dict[str, tuple[int, int]] = {}
    for kind, offset, size, link in ((s[1], s[4], s[5], s[6]) for s in sections):
        if kind != 2:  # SHT_SYMTAB
            continue
        strings_offset = sections[link][4]
        for start in range(offset, offset + size, 24):
            name_offset, _, _, _, value, symbol_size = struct.unpack_from("<IBBHQQ", data, start)
            end = data.index(b"\0", strings_offset + name_offset)
            name = data[strings_offset + name_offset : end].decode("ascii", "replace")
            if name in names:
                found[name] = (value, symbol_size)
    return found


def _loaded_library() -> tuple[Path, int]:
    import platform

    if platform.machine() not in ("x86_64", "AMD64"):
        raise SpaghettiError(f"the AVX2-only measurement needs an x86-64 CPU, this is {platform.machine()}")
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError as exc:
        raise SpaghettiError("the AVX2-only measurement needs Linux (/proc/self/maps)") from exc
    for line in maps.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[5].endswith(_LITERT_LIBRARY) and int(parts[2], 16) == 0:
            return Path(parts[5]), int(parts[0].split("-")[0], 16)
    raise SpaghettiError(f"{_LITERT_LIBRARY} is not loaded: import ai_edge_litert.interpreter first")


def limit_xnnpack_to_avx2() -> list[str]:
    """Make XNNPACK in this process pick the kernels it would pick on an AVX2-only CPU (no AVX-512, VNNI or AMX).

    XNNPACK chooses its kernels once per process from cpuinfo's feature table (``cpuinfo_isa``), filled from CPUID
    when XNNPACK first initializes. This fills the table first (``cpuinfo_initialize``) and clears the features
    an AVX2-only CPU lacks, so every delegate created afterwards uses the AVX2 / FMA3 kernels, the ones an AMD EPYC
    Zen 2 runs: checked by profiling (``perf`` reports ``xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_3x8c8__avx2``
    instead of the AMX / VNNI kernels, the same kernels as under valgrind, whose CPU has no AVX-512). Only
    features are removed, so the kernels still run natively; their timing is this CPU's, not an EPYC's.

    Call it before the first LiteRT interpreter of the process; run it in a process of its own
    (:func:`benchmark_avx2_only` does), because the change lasts until the process ends.

    Returns:
        The cleared feature names.

    Raises:
        SpaghettiError: not Linux x86-64, XNNPACK already initialized, the CPU has no AVX2, or the library's
            cpuinfo table is not the one this function knows (another ai-edge-litert build).
    """
    import ctypes

    import ai_edge_litert.interpreter  # noqa: F401  (loads the library that holds XNNPACK and cpuinfo)

    library, base = _loaded_library()
    wanted = {"cpuinfo_isa", "cpuinfo_initialize", "cpuinfo_is_initialized"}
    symbols = _elf_symbols(library, wanted)
    if set(symbols) != wanted or symbols["cpuinfo_isa"][1] != len(CPUINFO_X86_ISA_FIELDS):
        raise SpaghettiError(
            f"{library.name} has no cpuinfo feature table of the known layout ({sorted(symbols)}); "
            "the AVX2-only measurement needs ai-edge-litert 2.x for Linux x86-64"
        )
    if ctypes.c_bool.from_address(base + symbols["cpuinfo_is_initialized"][0]).value:
        raise SpaghettiError(
            "XNNPACK is already initialized in this process: limit it before any interpreter"
        )
    if not ctypes.CFUNCTYPE(ctypes.c_bool)(base + symbols["cpuinfo_initialize"][0])():
        raise SpaghettiError("cpuinfo could not read this CPU")
    table = (ctypes.c_bool * len(CPUINFO_X86_ISA_FIELDS)).from_address(base + symbols["cpuinfo_isa"][0])
    features = dict(zip(CPUINFO_X86_ISA_FIELDS, table, strict=True))
    flags = set(
        CPUINFO.read_text(encoding="utf-8", errors="replace").partition("flags")[2].split("\n")[0].split()
    )
    disagreeing = [name for name, flag in _LAYOUT_CHECKS.items() if features[name] != (flag in flags)]
    if disagreeing:
        raise SpaghettiError(
            f"cpuinfo's feature table disagrees with /proc/cpuinfo on {disagreeing}: unknown layout"
        )
    if not features["avx2"] or not features["fma3"]:
        raise SpaghettiError("this CPU has no AVX2 / FMA3: it cannot run XNNPACK's AVX2 kernels")
    cleared = []
    for index, name in enumerate(CPUINFO_X86_ISA_FIELDS):
        if table[index] and name.startswith(_NOT_ON_AVX2_CPUS):
            table[index] = False
            cleared.append(name)
    return cleared


def benchmark_avx2_only(
    model_path: str | Path, runs: int = 50, warmup: int = 5, seed: int = 0, timeout_s: float = 600.0
) -> LatencyResult:
    """:func:`benchmark` at 1 thread in a child process whose XNNPACK uses AVX2 kernels only.

    A proxy for an AVX2-only CPU such as an AMD EPYC Zen 2 (:func:`limit_xnnpack_to_avx2`): the same kernels,
    timed on this CPU's cores. The int8 / float ratio it gives is the one to compare; absolute times are this
    machine's.

    Args:
        model_path: the ``.tflite`` file.
        runs: timed invocations.
        warmup: untimed invocations first.
        seed: seed of the random input.
        timeout_s: the child's time limit.

    Returns:
        :class:`LatencyResult` with ``isa_limit="avx2"``.

    Raises:
        SpaghettiError: the limit cannot be applied here (see :func:`limit_xnnpack_to_avx2`), or the child failed.

    Example:
        >>> benchmark_avx2_only("exported/model_int8.tflite", runs=20).cpu_median_ms  # doctest: +SKIP
        30.2
    """
    request = json.dumps({"model": str(model_path), "runs": runs, "warmup": warmup, "seed": seed})
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [
        sys.executable,
        "-c",
        "from spaghettinet.evaluation.latency import _avx2_child; _avx2_child()",
        request,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=environment)
    except subprocess.TimeoutExpired as exc:
        raise SpaghettiError(f"the AVX2-only benchmark of {model_path} took over {timeout_s:.0f} s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise SpaghettiError(f"the AVX2-only benchmark of {model_path} failed: {done.stderr.strip()[-500:]}")
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise SpaghettiError(answer["error"])
    return LatencyResult.from_dict(answer)


def _avx2_child() -> None:
    """Entry point of :func:`benchmark_avx2_only`'s child: one JSON line out, the result or the error."""
    request = json.loads(sys.argv[1])
    try:
        limit_xnnpack_to_avx2()
        result = benchmark(request["model"], 1, request["runs"], request["warmup"], request["seed"])
    except SpaghettiError as exc:  # DataError and UsageError too
        print(json.dumps({"error": str(exc)}))
        return
    result.isa_limit = "avx2"
    print(json.dumps(result.to_dict()))
