"""The FID of frx (Frechet distance on frx-mnist-cnn features) behaves like an FID on real MNIST:
real against real is small, blur raises it step by step, noise and a single repeated digit raise it a
lot, and a second, independently trained extractor ranks these sets the same way."""

import pytest
import torch

from frx import fid_checks
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
            "second": fid.train_extractor(batches, epochs, cpu, **fid_checks.SECOND)}


def assert_behaves_like_fid(table):
    for e in ("main", "second"):
        col = {k: v[e] for k, v in table.items()}
        chain = [col[k] for k in EXPECTED_ORDER]
        assert chain == sorted(chain), (e, col)  # more blur, larger FID
        far = min(col["gaussian noise"], col["one digit repeated"])
        assert far > 10 * col["real train"] and far > col["blur sigma=0.5"], (e, col)
    # the far sets (noise, one digit, heavy blur) may swap places between extractors; nothing else
    assert fid_checks.ranking(table, "main")[:3] == fid_checks.ranking(table, "second")[:3] == EXPECTED_ORDER[:3]
    assert fid_checks.kendall_tau(table, "main", "second") >= 0.7, table


def test_checks_on_the_real_mnist_sample():
    """Reduced size: the 5,000-image MNIST sample (4,000 train / 1,000 test), 1,000 images per FID."""
    from frx.data import mnist5k

    x, y = mnist5k.load_arrays()
    tr, te = mnist5k.stratified_split(y, 0.2, 0)
    x = x.float() / 255
    torch.manual_seed(0)
    table = fid_checks.checks(two_extractors(x[tr], y[tr], epochs=2), x[tr], x[te], n=1000)
    assert_behaves_like_fid(table)


def test_kendall_tau():
    t = {"a": {"x": 1, "y": 10}, "b": {"x": 2, "y": 20}, "c": {"x": 3, "y": 30}}
    assert fid_checks.kendall_tau(t, "x", "y") == 1.0
    t["c"]["y"] = 5
    assert fid_checks.kendall_tau(t, "x", "y") == pytest.approx(-1 / 3)  # one pair of three agrees


def test_check_sets_are_what_they_say():
    x = torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    sets = fid_checks.check_sets(x, 20)
    assert all(s.shape == (20, 1, 28, 28) for s in sets.values())
    assert all(torch.equal(s, sets["one digit repeated"][0]) for s in sets["one digit repeated"])
    smooth = [(s[..., 1:, :] - s[..., :-1, :]).abs().mean() for s in
              (sets["real train"], sets["blur sigma=0.5"], sets["blur sigma=1"], sets["blur sigma=2"])]
    assert smooth == sorted(smooth, reverse=True)
    noise = sets["gaussian noise"]
    assert 0 <= noise.min() and noise.max() <= 1 and not torch.equal(noise, sets["real train"])


def test_command_line_refuses_bad_input_before_work(tmp_path, capsys):
    def cli(*args):
        with pytest.raises(SystemExit) as e:
            fid_checks.main([*args, "--root", str(tmp_path)])
        return e.value.code, capsys.readouterr().err

    code, err = cli("--samples", "0")
    assert code == 2 and "--samples must be in [2, 10000]" in err
    code, err = cli("--runs", str(tmp_path / "nope.json"))
    assert code == 2 and "no such record" in err
    assert fid_checks.main(["--samples", "100", "--root", str(tmp_path)]) == 2
    assert "MNIST is not in" in capsys.readouterr().err and not (tmp_path / "cache").exists()


def test_rescoring_a_run_reproduces_its_fid(tmp_path, capsys):
    """A VAE trained a few steps (smoke scale, MNIST-5k) and rescored from its packed file by the
    command line's code gets the FID its record holds, from the same cached extractor."""
    from omegaconf import OmegaConf

    from frx import data
    from frx.train import compose, run

    r = run(compose(["experiment=table4/vae_fr1", "scale=smoke", "dataset=mnist5k", "dataset.normalize=unit",
                     "trainer.threads=1", f"run.dir={tmp_path / 'run'}", f"run.records_dir={tmp_path / 'rec'}",
                     f"run.cache_dir={tmp_path / 'cache'}", "run.keep_all=true"]))
    dataset_cfg = OmegaConf.to_container(OmegaConf.create(r.config["dataset"]), resolve=True)
    splits = data.load(dataset_cfg)
    ex, info = fid.for_dataset(dataset_cfg, tmp_path / "cache", 1, torch.device("cpu"), splits=splits)
    assert info["fid_extractor_file"] == r.metric_extra["fid_extractor_file"]
    (record,) = (tmp_path / "rec").rglob("*.json")
    n = r.metric_extra["fid_samples"]
    table = fid_checks.rescore([record], {"main": ex}, tmp_path / "none", n)
    assert table[record.stem]["main"] == pytest.approx(r.metric["value"], rel=1e-4)
    # without the float32 pack, the float16 one is rescored: the record's value_fp16
    (tmp_path / "run" / "model.float32.frx").unlink()
    table = fid_checks.rescore([record], {"main": ex}, tmp_path / "none", n)
    assert table[record.stem]["main"] == pytest.approx(r.metric["value_fp16"], rel=1e-4)
    # without any packed model: one line before any extractor is trained
    (tmp_path / "run" / "model.float16.frx").unlink()
    assert fid_checks.main(["--root", str(tmp_path / "none"), "--cache-dir", str(tmp_path / "c2"), "--skip-checks",
                     "--runs", str(record)]) == 2
    err = capsys.readouterr().err
    assert "holds no model.float32.frx or model.float16.frx" in err and "Traceback" not in err
    assert not (tmp_path / "c2").exists()


@pytest.mark.slow
def test_checks_at_full_scale(tmp_path):
    """Full MNIST, both extractors trained 3 epochs on the 60,000 training images, 10,000 images per FID
    (what `frx-fid --samples 10000` prints)."""
    mnist_dir = SHARED_DATA / "mnist"
    if not (mnist_dir / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("full MNIST is not in the shared data")
    from frx.data import mnist

    mnist.import_files(mnist_dir, tmp_path)
    dataset_cfg, splits = fid_checks._vae_data(tmp_path)
    extractors = fid_checks._two_extractors(dataset_cfg, splits, tmp_path / "cache", 3, log=lambda s: None)
    table = fid_checks.checks(extractors, splits.train.x, splits.val.x, n=10000)
    table = {k: dict(zip(("main", "second"), v.values())) for k, v in table.items()}
    assert_behaves_like_fid(table)
