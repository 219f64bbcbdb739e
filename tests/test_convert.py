"""frx.set_k, the frereg converter (frx-convert) and frx-eval."""

import json
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchmetrics.segmentation import DiceScore

import frx
import frx.models as M
from frx.convert import FREREG_NAMES, from_frereg, read_frereg
from frx.convert import main as convert_main
from frx.evaluate import main as eval_main
from frx.fr import corner_mask, full_mask, idctn

from datadir import SHARED_DATA

RELEASE = SHARED_DATA / "frereg-unet"
ARCHIVE = RELEASE / "unet_fr.tar.xz"
needs_release = pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"the authors' release is not in {RELEASE}")


# -- set_k ------------------------------------------------------------------------------------

def _small():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    return model, frx.regularize(model)


def test_set_k_sets_each_tensor():
    model, fr = _small()
    frx.set_k(model, {"0.weight": 5, "2.weight": np.int64(3)})
    assert frx.get_k(model) == {"0.weight": 5, "2.weight": 3}
    assert fr.kept() == 8
    w = model[0].weight  # the spatial weight follows k
    t = model[0].parametrizations.weight.original.detach()
    torch.testing.assert_close(w, idctn(t * full_mask(t.shape, 5)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ks, message", [
    ({"1.weight": 2}, "'1.weight' is not a regularized weight"),
    ({"0.weight": 0}, "must be in [1, 108]"),
    ({"0.weight": 109}, "must be in [1, 108]"),
    ({"0.weight": 2.0}, "must be an integer"),
    ({"0.weight": True}, "must be an integer"),
])
def test_set_k_refuses_bad_input_and_changes_nothing(ks, message):
    model, _ = _small()
    before = frx.get_k(model)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        frx.set_k(model, {"2.weight": 1, **ks})  # a valid entry first: it must not be applied either
    assert frx.get_k(model) == before


def test_schedule_sets_k_again_when_training_goes_on():
    """As documented: set k is for models not trained further; FR.step() in training mode re-sets it."""
    model, fr = _small()
    frx.set_k(model, {"0.weight": 5})
    model.eval()
    fr.step()
    assert frx.get_k(model)["0.weight"] == 5
    model.train()
    fr.step()
    assert frx.get_k(model)["0.weight"] != 5


# -- a checkpoint in the authors' format ------------------------------------------------------

def _fr_shapes():
    model = M.build("unet_frereg")
    return {f"{n}.weight": tuple(m.weight.shape) for n, m in model.named_modules() if frx.fr.kind_of(m)}


def _sparse(shape, k, gen):
    """Sparse COO coefficients at the first k mask positions, random values."""
    idx = torch.nonzero(corner_mask(shape, k)).T
    return torch.sparse_coo_tensor(idx, torch.randn(k, generator=gen), shape, check_invariants=True)


@pytest.fixture(scope="module")
def authors_state():
    """{authors' name: sparse T} for unet_frereg, with a different k per tensor."""
    gen = torch.Generator().manual_seed(0)
    back = {v: k for k, v in FREREG_NAMES.items()}
    return {back.get(name, name): _sparse(shape, 5 + 3 * i, gen)
            for i, (name, shape) in enumerate(_fr_shapes().items())}


def _save(state, path):
    torch.save(state, path)
    return path


def _tar_xz(pt_path, path):
    with tarfile.open(path, "w:xz") as tar:
        tar.add(pt_path, arcname="unet_fr.pt")
    return path


def _direct_model(state):
    """unet_frereg whose weights are the dense inverse DCT of the coefficients, computed here."""
    model = M.build("unet_frereg")
    weights = {FREREG_NAMES.get(k, k): idctn(t.to_dense().double()).float() for k, t in state.items()}
    model.load_state_dict(weights)
    return model.eval()


def _convert(argv, capsys):
    rc = convert_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_round_trip(tmp_path, authors_state, capsys):
    src = _tar_xz(_save(authors_state, tmp_path / "unet_fr.pt"), tmp_path / "unet_fr.tar.xz")
    out = tmp_path / "u.frx"
    rc, stdout, err = _convert(["frereg", src, out, "--dtype", "float32"], capsys)
    assert (rc, err) == (0, "")
    ks = [t.coalesce().indices().shape[1] for t in authors_state.values()]
    header = frx.unpack_meta(out)
    assert [e["k"] for e in header["tensors"]] == ks  # state_dict order is the authors' order
    assert header["meta"]["model"] == "unet_frereg"
    assert f"{sum(ks)} of 31,024,960 weights kept" in stdout

    unpacked = M.build("unet_frereg")
    unpacked.load_state_dict(frx.unpack(out))
    x = torch.rand(1, 3, 48, 80, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = _direct_model(authors_state)(x)
        torch.testing.assert_close(unpacked.eval()(x), expected, rtol=1e-4, atol=1e-4)
        converted, fr = from_frereg(tmp_path / "unet_fr.pt")  # the Python API, from the .pt itself
        torch.testing.assert_close(converted(x), expected, rtol=1e-4, atol=1e-4)
    assert fr.kept() == sum(ks) and not converted.training


def _refused(tmp_path, capsys, src, what):
    out = tmp_path / "u.frx"
    rc, stdout, err = _convert(["frereg", src, out], capsys)
    assert rc == 2 and stdout == ""
    assert err.startswith("frx-convert: error: ") and err.count("\n") == 1, err
    assert what in err
    assert not out.exists() and not list(tmp_path.glob(".u.frx*"))  # nothing half-written
    return err


def test_tampered_positions_are_refused(tmp_path, authors_state, capsys):
    state = dict(authors_state)
    t = state["up2.up.weight"].coalesce()
    idx = t.indices().clone()
    k = idx.shape[1]
    idx[:, -1] = torch.tensor([100, 0, 0, 0])  # one coefficient moved outside the mask (L1 norm 100)
    state["up2.up.weight"] = torch.sparse_coo_tensor(idx, t.values(), t.shape, check_invariants=True)
    err = _refused(tmp_path, capsys, _save(state, tmp_path / "bad.pt"), f"up2.up.weight: its {k} stored positions")
    assert f"not frx's mask for k={k}" in err


@pytest.mark.parametrize("change, what", [
    (lambda s: {**s, "outc.conv.weight": s["outc.conv.weight"].to_dense()}, "outc.conv.weight: a dense tensor"),
    (lambda s: {("outc.weight" if k == "outc.conv.weight" else k): v for k, v in s.items()}, "unexpected outc.weight"),
    (lambda s: {k: v for k, v in s.items() if k != "inc.double_conv.0.weight"}, "missing inc.double_conv.0.weight"),
    (lambda s: [1, 2, 3], "expected a dict of tensors"),
])
def test_wrong_checkpoints_are_refused(tmp_path, authors_state, capsys, change, what):
    _refused(tmp_path, capsys, _save(change(authors_state), tmp_path / "bad.pt"), what)


def test_truncated_archive_is_refused(tmp_path, authors_state, capsys):
    whole = _tar_xz(_save(authors_state, tmp_path / "unet_fr.pt"), tmp_path / "whole.tar.xz").read_bytes()
    cut = tmp_path / "cut.tar.xz"
    cut.write_bytes(whole[:len(whole) // 2])
    _refused(tmp_path, capsys, cut, "unreadable archive, truncated or corrupt")


def test_other_bad_sources_are_refused(tmp_path, capsys):
    _refused(tmp_path, capsys, tmp_path / "absent.pt", "absent.pt: no such file")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    _refused(tmp_path, capsys, junk, "not a readable torch checkpoint")


def test_existing_output_is_kept(tmp_path, capsys):
    out = tmp_path / "u.frx"
    out.write_bytes(b"mine")
    rc, _, err = _convert(["frereg", ARCHIVE, out], capsys)
    assert rc == 2 and "exists; pass --overwrite" in err and out.read_bytes() == b"mine"


# -- the authors' release ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def release_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "u.frx"
    assert convert_main(["frereg", str(ARCHIVE), str(out)]) == 0
    return out


@needs_release
def test_release_converts_to_759_weights(release_file):
    header = frx.unpack_meta(release_file)
    fr_entries = [e for e in header["tensors"] if e["kind"] == "fr"]
    assert len(fr_entries) == 23 and {e["k"] for e in fr_entries} == {33}
    assert sum(int(np.prod(e["shape"])) for e in fr_entries) == 31_024_960
    assert len(header["tensors"]) == 23  # batch-statistics BatchNorm has no state
    assert release_file.stat().st_size < 4096


def _independent_dice(model, names, size):
    """Dice of the foreground per image, by torchmetrics, on images read here."""
    score = DiceScore(num_classes=2, include_background=False, average="macro", aggregation_level="samplewise",
                      input_format="index")
    for n in names:
        img = Image.open(RELEASE / "testimgs" / "input" / f"in{n}.png").convert("RGB")
        img = img.resize(size[::-1], Image.BILINEAR)
        msk = Image.open(RELEASE / "testimgs" / "mask" / f"gt{n}.png").convert("L").resize(size[::-1], Image.NEAREST)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
        with torch.no_grad():
            score.update(model(x).argmax(1), torch.from_numpy(np.asarray(msk) > 127).long()[None])
    return float(score.compute())


def _eval(release_file, tmp_path, capsys, *extra):
    out = tmp_path / "dice.json"
    argv = [str(release_file), "--images", str(RELEASE / "testimgs" / "input"),
            "--masks", str(RELEASE / "testimgs" / "mask"), "--json", str(out), *extra]
    assert eval_main(argv) == 0
    stdout = capsys.readouterr().out
    return json.loads(out.read_text()), stdout


@needs_release
def test_dice_on_two_images_at_reduced_size(release_file, tmp_path, capsys):
    result, stdout = _eval(release_file, tmp_path, capsys, "--limit", "2", "--size", "224x336")
    assert result["images"] == 2 and list(result["per_image"]) == ["in0000.png", "in0001.png"]
    assert stdout.count("dice") == 3  # one line per image and the final line
    direct = _direct_model(read_frereg(ARCHIVE))
    assert result["value"] == pytest.approx(_independent_dice(direct, ["0000", "0001"], (224, 336)), abs=2e-4)
    assert result["value"] > 0.9  # the model finds the cars


@needs_release
@pytest.mark.slow
def test_dice_on_the_16_images_matches_the_authors(release_file, tmp_path, capsys):
    result, stdout = _eval(release_file, tmp_path, capsys)
    assert result["images"] == 16 and result["size"] == "as stored"
    assert f"{result['value']:.4f}" == "0.9718"  # the authors' code: 0.97177
    assert "dice 0.9718" in stdout.splitlines()[-1]


def test_eval_refuses_bad_input_before_work(tmp_path, capsys):
    assert eval_main([str(tmp_path / "absent.frx"), "--images", str(tmp_path), "--masks", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"frx-eval: error: {tmp_path / 'absent.frx'}: no such file\n"
    model, _ = _small()
    packed = tmp_path / "small.frx"
    frx.pack(model, packed, meta={"model": "lenet5"})
    assert eval_main([str(packed), "--images", str(tmp_path), "--masks", str(tmp_path)]) == 2
    assert "lenet5 is a classification model" in capsys.readouterr().err
    assert eval_main([str(packed), "--model", "unet", "--images", str(tmp_path), "--masks", str(tmp_path)]) == 2
    assert f"{tmp_path}: no images" in capsys.readouterr().err


def test_eval_with_a_data_set_config(tmp_path, capsys):
    """frx-eval FILE dataset=...: the task's metric on the validation split of a config's data set."""
    from frx import data
    from frx.train import compose

    torch.manual_seed(0)
    model = M.build("lenet5")
    fr = frx.regularize(model)
    frx.set_k(model, {name: 40 for name, _, _ in fr.tensors})
    packed = tmp_path / "l5.frx"
    frx.pack(model, packed, dtype="float32", meta={"model": "lenet5"})
    out = tmp_path / "top1.json"
    assert eval_main([str(packed), "dataset=mnist5k", "dataset.limit_val=100", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert (result["metric"], result["model"], result["samples"]) == ("top1", "lenet5", 100)
    val = data.load(compose(["model=lenet5", "dataset=mnist5k", "dataset.limit_val=100"]).dataset).val
    with torch.no_grad():
        expected = (model.eval()(val.x).argmax(1) == val.y).float().mean().item()
    assert result["value"] == pytest.approx(expected, abs=1e-6)
    assert capsys.readouterr().out.startswith(f"top1 {expected:.4f}")

    # --split train: the same metric on the training images, as stored (no augmentation)
    assert eval_main([str(packed), "dataset=mnist5k", "dataset.limit_train=64", "--split", "train",
                      "--json", str(out), "--overwrite"]) == 0
    result = json.loads(out.read_text())
    assert (result["split"], result["samples"]) == ("train", 64)
    train = data.load(compose(["model=lenet5", "dataset=mnist5k", "dataset.limit_train=64"]).dataset).train
    with torch.no_grad():
        expected = (model(train.x).argmax(1) == train.y).float().mean().item()
    assert result["value"] == pytest.approx(expected, abs=1e-6)
    assert "64 mnist5k training samples" in capsys.readouterr().out
    assert eval_main([str(packed), "--split", "train", "--images", str(tmp_path), "--masks", str(tmp_path)]) == 2
    assert "--split goes with a config" in capsys.readouterr().err
