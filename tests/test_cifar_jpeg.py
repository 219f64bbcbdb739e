"""CIFAR-10 as JPEG copies: import (decode once), the loader's notes and second test sets,
and the batch augmentation used by the Table 2 recipe."""

import json

import numpy as np
import pytest
import torch
from test_data import ds_cfg

import frx.data as D
from frx.data import cifar10, cifar10_jpeg
from frx.data.cli import main as cli
from frx.data.common import CropFlip

from datadir import SHARED_DATA
from tiny_cifar import write_tiny_set

REAL = SHARED_DATA / "cifar10" / "cifar10-jpeg.npz"
SUBSET = SHARED_DATA / "cifar10" / "cifar10-subset.npz"
needs_real = pytest.mark.skipif(not (REAL.exists() and SUBSET.exists()), reason=f"{REAL.parent} is absent")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean()
    return 10 * np.log10(255.0 ** 2 / mse)


# ---------------------------------------------------------------- import
def test_jpeg_import_decodes_stores_and_adds_lossless_test(tmp_path, capsys):
    x_train, y_train, x_test, y_test = write_tiny_set(tmp_path / "src")
    root = tmp_path / "root"
    assert cli(["--root", str(root), "import", "cifar10", str(tmp_path / "src" / "cifar10-jpeg.npz"),
                "--lossless-test", str(tmp_path / "src" / "lossless.npz"), "--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "CIFAR-10 (JPEG copies)" in out and "lossless first test images: 10" in out
    marker = cifar10.jpeg_info(root)
    assert marker["train"] == 40 and marker["lossless_test"] == 10 and not marker["md5_is_published"]
    s = D.load(ds_cfg("cifar10", root, normalize="unit"))
    assert s.info["jpeg_copies"] and s.info["data_note"].startswith("CIFAR-10 (JPEG copies)")
    assert s.train.y.tolist() == y_train.tolist() and s.val.y.tolist() == y_test.tolist()
    # decoded once: lossy but close to the originals, in CHW order
    got = (s.train.x * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert 30 < psnr(got, x_train) < 99
    # the second test sets: the lossless images exactly, and the JPEG copies of the same images
    assert set(s.extra_val) == {"lossless1k", "jpeg1k"}
    lossless = s.extra_val["lossless1k"]
    assert torch.equal(lossless.x, torch.from_numpy(x_test[:10]).permute(0, 3, 1, 2).float() / 255)
    assert torch.equal(s.extra_val["jpeg1k"].x, s.val.x[:10])
    assert torch.equal(lossless.y, s.val.y[:10])
    # limit_val applies to them as to val
    s = D.load(ds_cfg("cifar10", root, limit_val=4))
    assert len(s.val) == 4 and len(s.extra_val["lossless1k"]) == 4
    # importing the same file again writes nothing
    assert cifar10.import_files(tmp_path / "src" / "cifar10-jpeg.npz", root,
                                lossless=tmp_path / "src" / "lossless.npz")["written"] == 0


def test_jpeg_import_refuses_bad_input_before_work(tmp_path, capsys):
    write_tiny_set(tmp_path / "src")
    src = tmp_path / "src" / "cifar10-jpeg.npz"
    z = dict(np.load(src))
    z["train_offsets"] = z["train_offsets"][:-1]
    np.savez(tmp_path / "cut.npz", **z)
    root = tmp_path / "root"
    assert cli(["--root", str(root), "import", "cifar10", str(tmp_path / "cut.npz")]) == 1
    assert "train_offsets do not cut train_jpeg into 40 images" in capsys.readouterr().err
    np.savez(tmp_path / "wrong.npz", x_test=np.zeros((3, 32, 32, 3), np.uint8), y_test=np.array([9, 9, 9], np.uint8))
    wrong = str(tmp_path / "wrong.npz")
    assert cli(["--root", str(root), "import", "cifar10", str(src), "--lossless-test", wrong]) == 1
    assert "not the first labels of the JPEG test set" in capsys.readouterr().err
    assert not root.exists()  # nothing written


def test_jpeg_import_does_not_replace_a_subset_silently(tmp_path):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "sub.npz", x_train=rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8),
             y_train=np.arange(5, dtype=np.uint8), x_test=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8),
             y_test=np.arange(2, dtype=np.uint8))
    root = tmp_path / "root"
    cifar10.import_files(tmp_path / "sub.npz", root)
    write_tiny_set(tmp_path / "src")
    with pytest.raises(FileExistsError, match="subset"):
        cifar10.import_files(tmp_path / "src" / "cifar10-jpeg.npz", root)
    cifar10.import_files(tmp_path / "src" / "cifar10-jpeg.npz", root, force=True)
    assert cifar10.subset_info(root) is None and cifar10.jpeg_info(root) is not None
    # without a lossless file the loader has no second test sets
    assert D.load(ds_cfg("cifar10", root)).extra_val == {}


@needs_real
def test_real_jpeg_file_slice_decodes_close_to_the_originals():
    z = cifar10_jpeg.read_jpeg_npz(REAL)  # structure of the whole file
    assert len(z["y_train"]) == 50000 and len(z["y_test"]) == 10000
    assert np.bincount(z["y_train"]).tolist() == [5000] * 10
    sub = np.load(SUBSET)
    x = cifar10_jpeg.decode_jpegs(z["train_jpeg"], z["train_offsets"], 0, 200)
    assert x.shape == (200, 32, 32, 3)
    assert 27 < psnr(x, sub["x_train"][:200]) < 40  # the README's 30.5 dB on average
    xt = cifar10_jpeg.decode_jpegs(z["test_jpeg"], z["test_offsets"], 0, 100)
    assert 27 < psnr(xt, sub["x_test"][:100]) < 40
    assert np.array_equal(z["y_test"][:1000], sub["y_test"])


@pytest.mark.slow
@needs_real
def test_import_real_jpeg_full_set(tmp_path):
    assert cli(["--root", str(tmp_path), "import", "cifar10", str(REAL)]) == 0  # finds cifar10-subset.npz beside it
    marker = cifar10.jpeg_info(tmp_path)
    assert marker["md5_is_published"] and marker["lossless_test"] == 1000
    s = D.load(ds_cfg("cifar10", tmp_path, normalize="unit"))
    assert (len(s.train), len(s.val)) == (50000, 10000) and not s.info["subset"]
    sub = np.load(SUBSET)
    assert torch.equal(s.extra_val["lossless1k"].x, torch.from_numpy(sub["x_test"]).permute(0, 3, 1, 2).float() / 255)
    assert s.val.y[:1000].tolist() == sub["y_test"].tolist()
    assert json.loads((cifar10.batch_dir(tmp_path) / cifar10.JPEG_MARKER).read_text())["test"] == 10000


# ---------------------------------------------------------------- augmentation
def test_crop_flip_crops_and_flips_each_image_of_the_batch():
    x = torch.arange(64 * 3 * 8 * 8, dtype=torch.float32).reshape(64, 3, 8, 8)
    out = CropFlip(torch.Generator().manual_seed(0), padding=2, flip=True)(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    offsets, flips = set(), 0
    for i in range(64):  # each output is one 8x8 window of its padded image, maybe mirrored
        windows = {(dy, dx): padded[i, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)}
        hits = [(dy, dx, f) for (dy, dx), w in windows.items() for f in (0, 1)
                if torch.equal(out[i], w.flip(2) if f else w)]
        assert hits, f"image {i} is no crop of its padded image"
        offsets.add(hits[0][:2])
        flips += hits[0][2]
    assert len(offsets) > 5 and 10 < flips < 54  # offsets vary per image; about half are flipped


def test_crop_flip_is_seeded_and_off_when_asked():
    x = torch.randn(16, 3, 32, 32)
    a = CropFlip(torch.Generator().manual_seed(3))(x)
    b = CropFlip(torch.Generator().manual_seed(3))(x)
    c = CropFlip(torch.Generator().manual_seed(4))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(CropFlip(torch.Generator(), padding=0, flip=False)(x), x)
    flipped = CropFlip(torch.Generator().manual_seed(0), padding=0, flip=True)(x)
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(2)) for f, o in zip(flipped, x))


def test_batches_augment_before_resize():
    split = D.TensorSplit(torch.rand(6, 3, 32, 32), torch.arange(6), size=(64, 64))
    seen = []

    def aug(x):
        seen.append(tuple(x.shape))
        return x

    x, _ = next(D.batches(split, 4, shuffle=True, generator=torch.Generator().manual_seed(0), augment=aug))
    assert seen == [(4, 3, 32, 32)] and x.shape == (4, 3, 64, 64)
