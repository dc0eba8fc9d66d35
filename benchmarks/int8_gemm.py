"""What this CPU can do at all: int8 GEMMs of Arch-Router's own layer shapes.

The router's prefill rate means little alone; next to the rate at which the same CPU runs
the matrix multiplications of the model's layers, with the kernel CTranslate2 itself calls
on x86 (oneMKL's packed ``cblas_gemm_s8u8s32``, exported by the ``libctranslate2`` the
wheel ships), it reads as a fraction of the hardware's limit. Attention, norms, quantizing
activations and the rest of a forward pass come on top: the floor is the GEMMs only.

    python benchmarks/int8_gemm.py [--tokens 512] [--smoke]
"""

from __future__ import annotations

import argparse
import ctypes
import time
from pathlib import Path

import ctranslate2
import numpy as np

HIDDEN, INTERMEDIATE, LAYERS, KV = 1536, 8960, 28, 256  # KV: 2 heads of 128
# (in, out) of each linear layer of one Qwen2 decoder layer: q, k, v, o, gate, up, down.
LAYER_SHAPES = (
    (HIDDEN, HIDDEN),
    (HIDDEN, KV),
    (HIDDEN, KV),
    (HIDDEN, HIDDEN),
    (HIDDEN, INTERMEDIATE),
    (HIDDEN, INTERMEDIATE),
    (INTERMEDIATE, HIDDEN),
)
_ROW_MAJOR, _NO_TRANS, _TRANS, _B_MATRIX, _PACKED, _FIX_OFFSET = 101, 111, 112, 162, 151, 173


def _mkl() -> ctypes.CDLL:
    """CTranslate2's own library: its oneMKL GEMMs (64-bit integers) are exported."""
    libs = Path(ctranslate2.__file__).resolve().parent.parent / "ctranslate2.libs"
    lib = ctypes.CDLL(str(next(libs.glob("libctranslate2-*.so*"))))
    i64, f32, ptr, i8 = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p, ctypes.c_int8
    lib.cblas_gemm_s8u8s32_pack_get_size.argtypes = [i64] * 4
    lib.cblas_gemm_s8u8s32_pack_get_size.restype = ctypes.c_size_t
    lib.cblas_gemm_s8u8s32_pack.argtypes = [i64] * 6 + [ptr, i64, ptr]
    lib.cblas_gemm_s8u8s32_pack.restype = None
    compute = lib.cblas_gemm_s8u8s32_compute
    compute.argtypes = [i64] * 7 + [f32, ptr, i64, i8, ptr, i64, i8, f32, ptr, i64, ptr]
    compute.restype = None
    return lib


def gemm_seconds(tokens: int, repeats: int = 5) -> float:
    """Best time of the int8 GEMMs of all 28 layers over ``tokens`` prompt tokens.

    As CTranslate2 runs them on this CPU (``CT2_VERBOSE=1``: "GEMM_S8 backend: MKL
    (packed: true, u8s8 preferred: true)"): weights ``[out, in]``, packed once at load and
    multiplied transposed; activations unsigned 8-bit.
    """
    mkl, rng = _mkl(), np.random.default_rng(0)
    offset = np.zeros(1, np.int32)
    per_layer = 0.0
    for k, n in LAYER_SHAPES:
        a = rng.integers(0, 255, (tokens, k), dtype=np.uint8)
        b = rng.integers(-127, 127, (n, k), dtype=np.int8)
        c = np.empty((tokens, n), np.int32)
        packed = np.empty(mkl.cblas_gemm_s8u8s32_pack_get_size(_B_MATRIX, tokens, n, k), np.uint8)
        mkl.cblas_gemm_s8u8s32_pack(
            _ROW_MAJOR, _B_MATRIX, _TRANS, tokens, n, k, b.ctypes.data, k, packed.ctypes.data
        )
        args = (_ROW_MAJOR, _NO_TRANS, _PACKED, _FIX_OFFSET, tokens, n, k, 1.0, a.ctypes.data, k)
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            mkl.cblas_gemm_s8u8s32_compute(
                *args, 0, packed.ctypes.data, k, 0, 0.0, c.ctypes.data, n, offset.ctypes.data
            )
            runs.append(time.perf_counter() - started)
        per_layer += min(runs)
    return per_layer * LAYERS


def ops_per_token() -> int:
    """Integer operations (multiply and add) of the layers' GEMMs for one token."""
    return 2 * LAYERS * sum(k * n for k, n in LAYER_SHAPES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument(
        "--smoke", action="store_true", help="16 tokens, one run: checks that it works (CI)"
    )
    args = parser.parse_args()
    if args.smoke:
        args.tokens = 16
    seconds = gemm_seconds(args.tokens, repeats=1 if args.smoke else 5)
    rate = args.tokens / seconds
    print(
        f"{args.tokens} tokens: {seconds:.3f} s of int8 GEMMs, {rate:.0f} tokens/s, "
        f"{ops_per_token() * rate / 1e9:.0f} GOPS"
    )


if __name__ == "__main__":
    main()
