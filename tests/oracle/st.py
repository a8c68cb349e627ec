"""Minimal safetensors reader/writer (json + struct + numpy only).

Format: 8-byte little-endian header length N, then N bytes of JSON
{"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 "__metadata__": {...}} padded with spaces so that the data starts on an
8-byte boundary, then the raw little-endian tensor data (offsets relative to
the start of the data area).

Supported dtypes: F64 F32 F16 BF16 I64 I32 (plus I16 I8 U8 BOOL on read).
BF16 has no numpy type: `load` returns it as float32 (exact widening) unless
raw_bf16=True, in which case the uint16 bit patterns are returned.
"""
import json
import struct

import numpy as np

_NP = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
    "BF16": np.dtype("<u2"),  # raw bit patterns
}
_FROM_NP = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


class SafetensorsError(Exception):
    pass


def bf16_to_f32(bits):
    """uint16 BF16 bit patterns -> float32 (exact)."""
    bits = np.asarray(bits, dtype=np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16(x):
    """float32 -> uint16 BF16 bit patterns, round to nearest even (NaN kept NaN)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    out = rounded.astype(np.uint16)
    nan = np.isnan(x)
    if nan.any():
        out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def read_header(path):
    """Return (header dict without __metadata__, metadata, data offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: file too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > 100 * 1024 * 1024:
            raise SafetensorsError(f"{path}: header length {n} is implausible")
        hdr = f.read(n)
        if len(hdr) != n:
            raise SafetensorsError(f"{path}: truncated header")
    try:
        h = json.loads(hdr.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: bad header JSON: {e}")
    if not isinstance(h, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    meta = h.pop("__metadata__", None)
    return h, meta, 8 + n


def load(path, raw_bf16=False):
    """Read a safetensors file into {name: numpy array} (insertion = header order)."""
    h, _meta, base = read_header(path)
    with open(path, "rb") as f:
        f.seek(base)
        data = f.read()
    out = {}
    for name, info in h.items():
        try:
            dt = info["dtype"]
            shape = [int(d) for d in info["shape"]]
            b, e = (int(v) for v in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"{path}: tensor {name!r}: malformed entry")
        if dt not in _NP:
            raise SafetensorsError(f"{path}: tensor {name!r}: unsupported dtype {dt}")
        npdt = _NP[dt]
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= b <= e <= len(data)) or e - b != count * npdt.itemsize:
            raise SafetensorsError(
                f"{path}: tensor {name!r}: data_offsets [{b}, {e}] do not fit "
                f"shape {shape} {dt} (data size {len(data)})")
        arr = np.frombuffer(data, dtype=npdt, count=count, offset=b).reshape(shape).copy()
        if dt == "BF16" and not raw_bf16:
            arr = bf16_to_f32(arr)
        out[name] = arr
    return out


def save(path, tensors, metadata=None, bf16=()):
    """Write {name: array} to `path`.

    Arrays keep their numpy dtype (F64/F32/F16/I64/I32/...). Names listed in
    `bf16` are written as BF16 (converted from float32, round to nearest even).
    Tensors are stored in sorted name order; 0-d arrays get shape [].
    """
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name])
        if name in bf16:
            dt = "BF16"
            buf = f32_to_bf16(a.astype(np.float32)).astype("<u2").tobytes()
        else:
            if a.dtype not in _FROM_NP:
                raise SafetensorsError(f"tensor {name!r}: unsupported numpy dtype {a.dtype}")
            dt = _FROM_NP[a.dtype]
            buf = np.ascontiguousarray(a, dtype=_NP[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": [int(d) for d in a.shape],
                        "data_offsets": [off, off + len(buf)]}
        blobs.append(buf)
        off += len(buf)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def _selfcheck(tmpdir):
    import os
    rng = np.random.default_rng(0)
    t = {
        "f64": rng.standard_normal((2, 3)),
        "f32": rng.standard_normal((4,)).astype(np.float32),
        "f16": rng.standard_normal((3, 1, 2)).astype(np.float16),
        "i64": rng.integers(-5, 5, (2, 2)).astype(np.int64),
        "i32": rng.integers(-5, 5, (5,)).astype(np.int32),
        "scalar": np.array(1.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "bf": np.array([1.0, -2.5, 3.0e-3, 1e30], dtype=np.float32),
    }
    p = os.path.join(tmpdir, "st_selfcheck.safetensors")
    save(p, t, metadata={"format": "pt"}, bf16={"bf"})
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    assert n % 8 == 0, "header not padded to 8 bytes"
    r = load(p)
    assert list(r) == sorted(t)
    for k, v in t.items():
        if k == "bf":
            assert r[k].dtype == np.float32
            assert np.allclose(r[k], v, rtol=2 ** -8), (r[k], v)
            assert r[k][0] == 1.0 and r[k][1] == -2.5
            continue
        assert r[k].dtype == v.dtype and r[k].shape == v.shape, k
        assert np.array_equal(r[k], v), k
    assert load(p, raw_bf16=True)["bf"].dtype == np.uint16
    # round-to-nearest-even check: 1 + 2^-8 is a tie -> rounds to 1.0 (even)
    assert bf16_to_f32(f32_to_bf16(np.float32(1 + 2 ** -8)))[()] == 1.0
    assert bf16_to_f32(f32_to_bf16(np.float32(1 + 3 * 2 ** -8)))[()] == 1 + 2 ** -6
    return True
