"""The FID of frx (Frechet distance on frx-mnist-cnn features) behaves like an FID on real MNIST:
real against real is small, blur raises it step by step, noise and a single repeated digit raise it a
lot, and a second, independently trained extractor ranks these sets the same way."""

import json
import subprocess
import sys

import pytest
import torch

from frx.tasks import fid

from datadir import SHARED_DATA

EXPECTED_ORDER = ["real train", "blur sigma=0.5", "blur sigma=1", "blur sigma=2"]


def two_extractors(x, y, epochs):
    def batches(gen):
        idx = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            yield x[idx[i:i + 128]], y[idx[i:i + 128]]

    cpu = torch.device("cpu")
    return {"main": fid.train_extractor(batches, epochs, cpu),
            "second": fid.train_extractor(batches, epochs, cpu, **fid.SECOND)}


def assert_behaves_like_fid(table):
    for e in ("main", "second"):
        col = {k: v[e] for k, v in table.items()}
        chain = [col[k] for k in EXPECTED_ORDER]
        assert chain == sorted(chain), (e, col)  # more blur, larger FID
        far = min(col["gaussian noise"], col["one digit repeated"])
        assert far > 10 * col["real train"] and far > col["blur sigma=0.5"], (e, col)
    # the far sets (noise, one digit, heavy blur) may swap places between extractors; nothing else
    assert fid.ranking(table, "main")[:3] == fid.ranking(table, "second")[:3] == EXPECTED_ORDER[:3]
    assert fid.kendall_tau(table, "main", "second") >= 0.7, table


def test_checks_on_the_real_mnist_sample():
    """Reduced size: the 5,000-image MNIST sample (4,000 train / 1,000 test), 1,000 images per FID."""
    from frx.data import mnist5k

    x, y = mnist5k.load_arrays()
    tr, te = mnist5k.stratified_split(y, 0.2, 0)
    x = x.float() / 255
    torch.manual_seed(0)
    table = fid.checks(two_extractors(x[tr], y[tr], epochs=2), x[tr], x[te], n=1000)
    assert_behaves_like_fid(table)


def test_kendall_tau():
    t = {"a": {"x": 1, "y": 10}, "b": {"x": 2, "y": 20}, "c": {"x": 3, "y": 30}}
    assert fid.kendall_tau(t, "x", "y") == 1.0
    t["c"]["y"] = 5
    assert fid.kendall_tau(t, "x", "y") == pytest.approx(-1 / 3)  # one pair of three agrees


def test_check_sets_are_what_they_say():
    x = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    sets = fid.check_sets(x, 20)
    assert all(s.shape == (20, 1, 28, 28) for s in sets.values())
    assert all(torch.equal(s, sets["one digit repeated"][0]) for s in sets["one digit repeated"])
    smooth = [(s[..., 1:, :] - s[..., :-1, :]).abs().mean() for s in
              (sets["real train"], sets["blur sigma=0.5"], sets["blur sigma=1"], sets["blur sigma=2"])]
    assert smooth == sorted(smooth, reverse=True)
    noise = sets["gaussian noise"]
    assert 0 <= noise.min() and noise.max() <= 1 and not torch.equal(noise, sets["real train"])


def test_command_line_refuses_bad_input_before_work(tmp_path):
    def cli(*args):
        return subprocess.run([sys.executable, "-m", "frx.tasks.fid", *args], capture_output=True, text=True)

    r = cli("--samples", "0", "--root", str(tmp_path))
    assert r.returncode == 2 and "--samples must be in [2, 10000]" in r.stderr
    r = cli("--runs", str(tmp_path / "nope.json"), "--root", str(tmp_path))
    assert r.returncode == 2 and "no such record" in r.stderr
    r = cli("--samples", "100", "--root", str(tmp_path))
    assert r.returncode == 2 and "MNIST is not in" in r.stderr and not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_checks_at_full_scale(tmp_path):
    """Full MNIST, both extractors trained 3 epochs on the 60,000 training images, 10,000 images per FID
    (what `python -m frx.tasks.fid --samples 10000` prints)."""
    mnist_dir = SHARED_DATA / "mnist"
    if not (mnist_dir / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("full MNIST is not in the shared data")
    from frx.data import mnist

    mnist.import_files(mnist_dir, tmp_path)
    train, test = fid._mnist(tmp_path)
    table = fid.checks(fid._two_extractors(tmp_path / "cache", train, test, 3, log=lambda s: None),
                       train[0], test[0], n=10000)
    table = {k: dict(zip(("main", "second"), v.values())) for k, v in table.items()}
    assert_behaves_like_fid(table)
    json.dumps(table)
