"""The packed format's int8 coefficients, its version rule, and bad input that passes the checksum."""

import json
import struct
import zlib

import pytest
import torch
from torch import nn

import frx
from frx.fr import CorruptFile, codec
from frx.models import build


def lenet5_v2(seed=0):
    """LeNet-5 at the paper's v2 floors, with random (untrained) coefficients."""
    torch.manual_seed(seed)
    model = build("lenet5")
    fr = frx.regularize(model, epsilon=0.001, gamma=1.0, init="normal", generator=torch.Generator().manual_seed(seed))
    model.train()
    fr.step()
    return model.eval(), fr


def kept(path, name):
    """The stored coefficients of one fr entry, decoded."""
    header, payload = codec._read(path)
    offset = 0
    for e in header["tensors"]:
        if e["name"] == name:
            return codec._decode(e, payload[offset:offset + e["bytes"]])
        offset += e["bytes"]
    raise KeyError(name)


def test_int8_round_trip_within_half_a_step_and_size(tmp_path):
    model, fr = lenet5_v2()
    frx.pack(model, tmp_path / "f32.frx", dtype="float32")
    frx.pack(model, tmp_path / "i8.frx", dtype="int8")
    entries = frx.unpack_meta(tmp_path / "i8.frx")["tensors"]
    fr_entries = [e for e in entries if e["kind"] == "fr"]
    assert [e["dtype"] for e in fr_entries] == ["int8"] * 4
    assert all(e["dtype"] == "float16" for e in entries if e["kind"] == "plain")  # biases stay float
    assert sum(e["bytes"] for e in fr_entries) <= 1.1 * fr.kept()
    for e in fr_entries:
        exact, q = kept(tmp_path / "f32.frx", e["name"]), kept(tmp_path / "i8.frx", e["name"])
        group = e["group"]
        pad = (-len(exact)) % group
        step = torch.cat([exact, exact.new_zeros(pad)]).reshape(-1, group).abs().amax(1) / 127
        bound = step.repeat_interleave(group)[:len(exact)] / 2 + 1e-7
        assert ((q - exact).abs() <= bound).all()
        assert not torch.equal(q, exact)
    plain = build("lenet5").eval()
    plain.load_state_dict(frx.unpack(tmp_path / "i8.frx"))
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref, out = model(x), plain(x)
    torch.testing.assert_close(out, ref, atol=0.02 * ref.abs().max().item(), rtol=0)


def test_quantize_zero_groups_and_extremes():
    values = torch.tensor([0.0] * 5 + [3.0, -3.0, 1.5, 0.0])
    scales, codes = codec.quantize_int8(values, group=5)
    assert scales.tolist() == [0.0, pytest.approx(3 / 127)]
    assert codes.tolist() == [0] * 5 + [127, -127, 64, 0]
    back = codec.dequantize_int8(scales, codes, 5)
    assert back[:5].tolist() == [0.0] * 5 and back[5].item() == pytest.approx(3.0)


def write_raw(path, header, payload=b"", version=codec.VERSION, compress=True):
    """A file with a valid checksum around any header."""
    h = zlib.compress(json.dumps(header).encode()) if compress else header
    body = codec._HEAD.pack(codec.MAGIC, version, len(h)) + h + payload
    path.write_bytes(body + codec._CRC.pack(zlib.crc32(body)))
    return path


def test_version_1_files_still_unpack(tmp_path, monkeypatch):
    model, _ = lenet5_v2()
    frx.pack(model, tmp_path / "v2.frx", dtype="float16")
    monkeypatch.setattr(codec, "VERSION", 1)
    frx.pack(model, tmp_path / "v1.frx", dtype="float16")
    monkeypatch.undo()
    assert struct.unpack_from("<H", (tmp_path / "v1.frx").read_bytes(), 8) == (1,)
    assert struct.unpack_from("<H", (tmp_path / "v2.frx").read_bytes(), 8) == (2,)
    a, b = frx.unpack(tmp_path / "v1.frx"), frx.unpack(tmp_path / "v2.frx")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_newer_version_is_a_clear_error(tmp_path):
    model, _ = lenet5_v2()
    path = tmp_path / "m.frx"
    frx.pack(model, path)
    data = bytearray(path.read_bytes()[:-4])
    struct.pack_into("<H", data, 8, codec.VERSION + 1)
    path.write_bytes(bytes(data) + codec._CRC.pack(zlib.crc32(bytes(data))))
    with pytest.raises(CorruptFile, match="newer frx"):
        frx.unpack(path)


GOOD_FR = {"name": "w", "kind": "fr", "layer": "linear", "shape": [4, 6], "view": [4, 6], "dims": [0, 1], "k": 5,
           "dtype": "float16", "torch_dtype": "torch.float32", "bytes": 10}


@pytest.mark.parametrize("header", [
    [1, 2, 3],
    {"meta": {}},
    {"tensors": "nope"},
    {"tensors": [{"kind": "fr"}]},
    {"tensors": [{**GOOD_FR, "k": 0}]},
    {"tensors": [{**GOOD_FR, "k": "5"}]},
    {"tensors": [{**GOOD_FR, "bytes": 12}]},
    {"tensors": [{**GOOD_FR, "view": [5, 6]}]},
    {"tensors": [{**GOOD_FR, "dims": [2]}]},
    {"tensors": [{**GOOD_FR, "dims": []}]},
    {"tensors": [{**GOOD_FR, "dtype": "bfloat7"}]},
    {"tensors": [{**GOOD_FR, "dtype": "int8"}]},  # no group
    {"tensors": [{**GOOD_FR, "torch_dtype": "torch.nonsense"}]},
    {"tensors": [{**GOOD_FR, "layer": "attention"}]},
    {"tensors": [{"name": "b", "kind": "plain", "shape": [3], "dtype": "object", "torch_dtype": "torch.float32",
                  "bytes": 24}]},
    {"tensors": [{"name": "b", "kind": "plain", "shape": [-3], "dtype": "float32", "torch_dtype": "torch.float32",
                  "bytes": 12}]},
    {"tensors": [GOOD_FR], "meta": [1]},
])
def test_bad_header_with_valid_checksum_is_corrupt_file(tmp_path, header):
    path = write_raw(tmp_path / "bad.frx", header, b"\0" * 10)
    with pytest.raises(CorruptFile):
        frx.unpack(path)


def test_hand_written_good_header_reads(tmp_path):
    """The helper above makes readable files: the bad-header cases fail for their defect alone."""
    values = torch.arange(1, 6, dtype=torch.float16)
    path = write_raw(tmp_path / "good.frx", {"tensors": [GOOD_FR], "meta": {}}, values.numpy().tobytes())
    w = frx.unpack(path)["w"]
    assert w.shape == (4, 6) and w.abs().sum() > 0


def test_pack_refuses_values_beyond_float16(tmp_path):
    model, _ = lenet5_v2()
    with torch.no_grad():
        model.fc2.bias[3] = 1e6
    with pytest.raises(ValueError, match="fc2.bias.*float16"):
        frx.pack(model, tmp_path / "m.frx", dtype="float16")
    assert not (tmp_path / "m.frx").exists()
    frx.pack(model, tmp_path / "m.frx", dtype="float32")  # float32 holds it
    assert frx.unpack(tmp_path / "m.frx")["fc2.bias"][3] == 1e6

    big = nn.Linear(6, 4)
    frx.regularize(big, epsilon=0.5, gamma=1.0, min_kept={"linear": 1})
    with torch.no_grad():
        big.parametrizations.weight.original.mul_(1e7)
    with pytest.raises(ValueError, match="weight.*float16"):
        frx.pack(big, tmp_path / "big.frx", dtype="float16", plain_dtype="float32")
    frx.pack(big, tmp_path / "big.frx", dtype="int8")  # int8 scales are float32: fine
    torch.testing.assert_close(frx.unpack(tmp_path / "big.frx")["weight"], big.weight.detach(),
                               atol=big.weight.abs().max().item() * 0.01, rtol=0)
    with torch.no_grad():
        big.parametrizations.weight.original[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        frx.pack(big, tmp_path / "nan.frx", dtype="int8")


def test_bad_dtypes_refused_before_writing(tmp_path):
    model, _ = lenet5_v2()
    for kw in ({"dtype": "int4"}, {"dtype": "int8", "plain_dtype": "int8"}):
        with pytest.raises(ValueError, match="dtype"):
            frx.pack(model, tmp_path / "m.frx", **kw)
    assert not (tmp_path / "m.frx").exists()


def test_repack_quantizes_what_the_file_holds(tmp_path):
    model, _ = lenet5_v2()
    frx.pack(model, tmp_path / "f32.frx", dtype="float32", meta={"seed": 0})
    frx.pack(model, tmp_path / "i8.frx", dtype="int8", plain_dtype="float32")
    size = codec.repack(tmp_path / "f32.frx", tmp_path / "re.frx", "int8")
    assert size == (tmp_path / "re.frx").stat().st_size < (tmp_path / "f32.frx").stat().st_size
    a, b = frx.unpack(tmp_path / "i8.frx"), frx.unpack(tmp_path / "re.frx")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert frx.unpack_meta(tmp_path / "re.frx")["meta"] == {"seed": 0}
    with pytest.raises(FileExistsError):
        codec.repack(tmp_path / "f32.frx", tmp_path / "re.frx", "int8")
