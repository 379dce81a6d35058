"""mpiray.kernels.reduce_into (the collectives' reduction kernel) against numpy and torch."""

import numpy as np
import pytest

kernels = pytest.importorskip("mpiray.kernels")

OPS = {"sum": np.add, "product": np.multiply, "min": np.minimum, "max": np.maximum}
DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint8]


def data(rng, dtype, n):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
        x[: n // 2] = rng.integers(-50 if info.min < 0 else 0, 50, n // 2)  # no overflow here
        return x
    x = rng.normal(scale=4.0, size=n).astype(dtype)
    x[::97] = np.nan
    x[1::89] = np.inf
    x[2::83] = -0.0
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("n", [5, 100_003])
def test_matches_numpy(op, dtype, n):
    rng = np.random.default_rng(hash((op, np.dtype(dtype).name, n)) % 2**32)
    a, b = data(rng, dtype, n), data(rng, dtype, n)
    with np.errstate(all="ignore"):
        # numpy computes float16 in float32 and rounds once, as the kernel does.
        if dtype == np.float16:
            ref = OPS[op](a.astype(np.float32), b.astype(np.float32)).astype(np.float16)
        else:
            ref = OPS[op](a, b)
    out = a.copy()
    assert kernels.reduce_into(out, b, op) is out
    np.testing.assert_array_equal(out, ref)  # NaN == NaN here; bit-exact otherwise


@pytest.mark.parametrize("op", list(OPS))
def test_torch_tensors_in_place_including_bfloat16(op):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    for dtype in [torch.float32, torch.bfloat16, torch.float16, torch.int64]:
        if dtype.is_floating_point:
            a = torch.randn(50_001, generator=g).to(dtype)
            b = torch.randn(50_001, generator=g).to(dtype)
        else:
            a = torch.randint(-1000, 1000, (50_001,), generator=g, dtype=dtype)
            b = torch.randint(-1000, 1000, (50_001,), generator=g, dtype=dtype)
        fn = {"sum": torch.add, "product": torch.mul, "min": torch.minimum, "max": torch.maximum}[op]
        if dtype in (torch.bfloat16, torch.float16):
            ref = fn(a.float(), b.float()).to(dtype)
        else:
            ref = fn(a, b)
        out = a.clone()
        kernels.reduce_into(out, b, op)  # through DLPack: the tensor itself is written
        assert torch.equal(out, ref), (op, dtype)


def test_bad_input():
    a = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="unknown reduce op"):
        kernels.reduce_into(a, a, "mean")
    with pytest.raises(TypeError, match="src is"):
        kernels.reduce_into(a, np.zeros(4, np.float64))
    with pytest.raises(ValueError, match="elements"):
        kernels.reduce_into(a, np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="unsupported dtype"):
        kernels.reduce_into(np.zeros(4, np.complex64), np.zeros(4, np.complex64))
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        kernels.reduce_into(ro, a)


def test_backend_is_reported():
    b = kernels.backend()
    assert ("Kokkos" in b) == kernels.uses_kokkos()
