"""Every task trains a couple of steps through the shared loop and writes its record: classification
(Table 1 on the real MNIST when its files are at hand), segmentation (synthetic Carvana), GAN and
VAE (FID with frx's own MNIST features), and the magnitude-pruning baseline."""

import json
import math
from pathlib import Path

import pytest
import torch

from frx.tasks import fid
from frx.train import compose, run

from datadir import SHARED_DATA

SHARED_MNIST = SHARED_DATA / "mnist"


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """A data root holding the real MNIST (imported from the shared copy), or None where it is absent."""
    if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists():
        return None
    from frx.data import mnist

    root = tmp_path_factory.mktemp("data")
    mnist.import_files(SHARED_MNIST, root)
    return root


def data_overrides(mnist_root, substitute: list[str]) -> list[str]:
    """Use the real MNIST when present, else the offline MNIST-5k scaled/resized the same way."""
    return [f"dataset.root={mnist_root}"] if mnist_root else ["dataset=mnist5k", *substitute]


def go(tmp, *args):
    return run(compose([*args, "scale=smoke", "trainer.threads=1", f"run.dir={tmp / 'run'}",
                        f"run.records_dir={tmp / 'records'}", f"run.cache_dir={tmp / 'cache'}"]))


@pytest.mark.parametrize("experiment", ["table1/lenet5_v1", "table1/lenet300_v2", "table1/lenet5_ref"])
def test_table1_rows(tmp_path, mnist_root, experiment):
    r = go(tmp_path, f"experiment={experiment}", *data_overrides(mnist_root, []))
    assert r.table == 1 and r.row.startswith("LeNet") and r.metric["name"] == "top1"
    assert r.dataset == ("mnist" if mnist_root else "mnist5k")
    assert (tmp_path / "records" / (experiment + ("" if mnist_root else "__dataset=mnist5k")
                                    + "__smoke__seed0.json")).exists()


def test_pruning_baseline_keeps_the_fr_budget(tmp_path):
    r = go(tmp_path, "experiment=table1/lenet5_v2_prune", "dataset=mnist5k", "trainer.epochs=2")
    assert r.method == "prune" and r.linear_view is None
    assert [t["kept"] for t in r.tensors] == [128, 128, 264, 256]  # FR's final mask, tensor by tensor
    assert r.counts["kept_weights"] == 776 and r.epochs[-1]["kept"] == 776


def test_segmentation_unet_on_synthetic_carvana(tmp_path):
    r = go(tmp_path, "experiment=table3/unet_v1", "dataset=carvana_synthetic", "dataset.resize=[32,48]",
           f"dataset.root={tmp_path / 'data'}", "model.kwargs.base=4", "dataset.synthetic.cars=6",
           "dataset.synthetic.height=64", "dataset.synthetic.width=96", "trainer.batch_size=2")
    assert r.task == "segmentation" and r.metric["name"] == "dice" and r.metric["higher_is_better"]
    assert 0.0 <= r.metric["value"] <= 1.0
    assert all(t["kind"] == "conv" for t in r.tensors) and len(r.tensors) == 23  # the UNet's 23 conv weights
    png = tmp_path / "records" / "table3" / r.metric_extra["samples"][0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("experiment, substitute, small", [
    ("table4/gan_fr1", ["dataset.normalize=symmetric", "dataset.resize=[64,64]"],
     ["model.kwargs.ngf=8", "model.kwargs.ndf=8"]),
    ("table4/vae_fr1", ["dataset.normalize=unit"], []),
])
def test_generative_rows_score_fid_with_frx_features(tmp_path, mnist_root, experiment, substitute, small):
    r = go(tmp_path, f"experiment={experiment}", *data_overrides(mnist_root, substitute), *small)
    m = r.metric
    assert m["name"] == "fid" and m["higher_is_better"] is False
    assert all(v >= 0 and v == v for v in (m["value"], m["value_fp16"], m["value_live"]))
    extra = r.metric_extra
    assert extra["fid_feature_extractor"] == fid.NAME and Path(extra["fid_extractor_file"]).exists()
    assert Path(extra["fid_extractor_file"]).parent == tmp_path / "cache"
    png = tmp_path / "records" / "table4" / extra["samples"][0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r.method == "fr" and r.counts["kept_weights"] < r.counts["dense_weights"]


def test_fid_is_float32_under_bfloat16_autocast(tmp_path, mnist_root, monkeypatch):
    """With trainer.amp (bfloat16 on the CPU, as scale=cpu) the generator runs under autocast, but the FID
    network and the statistics do not: every generated batch reaches the Frechet distance with autocast off."""
    from frx.tasks import generative

    seen, original = [], fid.frechet_distance

    def frechet_distance(extractor, real, fake):
        def watched():
            for x in fake:
                seen.append((x.dtype, torch.is_autocast_enabled("cpu")))
                yield x
        return original(extractor, real, watched())

    monkeypatch.setattr(generative._fid, "frechet_distance", frechet_distance)
    go(tmp_path, "experiment=table4/gan_fr1", "trainer.amp=true", "trainer.amp_dtype=bfloat16",
       *data_overrides(mnist_root, ["dataset.normalize=symmetric", "dataset.resize=[64,64]"]),
       "model.kwargs.ngf=8", "model.kwargs.ndf=8")
    assert seen and set(seen) == {(torch.float32, False)}


def test_fid_extractor_is_trained_once_and_cached(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    calls = []

    def train(gen):
        calls.append(1)
        yield x, y

    def val():
        yield x, y

    key = {"dataset": "toy"}
    a, info = fid.get_extractor(tmp_path, key, train, val, epochs=1, device=torch.device("cpu"), log=lambda s: None)
    b, info2 = fid.get_extractor(tmp_path, key, train, val, epochs=1, device=torch.device("cpu"), log=lambda s: None)
    assert len(calls) == 1 and info == info2 and info["fid_feature_extractor"] == "frx-mnist-cnn"
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    same = fid.frechet_distance(a, [x[:32]], [x[:32]])
    other = fid.frechet_distance(a, [x[:32]], [torch.zeros(32, 1, 64, 64)])  # any size: resized to 28x28
    assert abs(same) < 1e-3 < other


def test_fid_extractor_trains_on_one_cpu_thread_whatever_the_machine_has():
    """A thread count changes the order of float sums and so the trained network: the extractor trains on
    one thread, and the caller's thread count comes back."""
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    seen = []

    def train(gen):
        seen.append(torch.get_num_threads())
        yield x, y

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fid.train_extractor(train, epochs=2, device=torch.device("cpu"))
        assert seen == [1, 1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_fid_extractor_cache_key_leaves_out_the_data_root(tmp_path):
    """The same images in two data roots are scored by one network (one cache file)."""
    from frx.data.mnist5k import present

    if not present(None):
        pytest.skip("the MNIST sample is not installed")
    cfg = {"name": "mnist5k", "source": "mnist5k", "normalize": "unit", "val_fraction": 0.2, "split_seed": 0}
    paths = []
    for root in ("a", "b"):
        _, info = fid.for_dataset({**cfg, "root": str(tmp_path / root)}, tmp_path / "cache", epochs=1,
                                  device=torch.device("cpu"), log=lambda s: None)
        paths.append(info["fid_extractor_file"])
    assert paths[0] == paths[1] and len(list((tmp_path / "cache").glob("*.pt"))) == 1


SHARED_CIFAR = SHARED_DATA / "cifar10" / "cifar10-subset.npz"
EXPERIMENT_DIR = Path(__file__).resolve().parent.parent / "frx" / "conf" / "experiment"
ALL = sorted(p.relative_to(EXPERIMENT_DIR).with_suffix("").as_posix() for p in EXPERIMENT_DIR.rglob("*.yaml"))


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ALL)
def test_every_experiment_runs_at_smoke_scale(tmp_path, mnist_root, experiment):
    """Each experiment, at full model size, for two steps of two epochs (Carvana: synthetic, small)."""
    extra = []
    if experiment.startswith("table1") or experiment.startswith("table4"):
        if mnist_root is None:
            pytest.skip("the real MNIST files are not at hand")
        extra = [f"dataset.root={mnist_root}"]
    elif experiment.startswith("table2"):
        if not SHARED_CIFAR.exists():
            pytest.skip("the CIFAR-10 subset is not at hand")
        from frx.data import cifar10

        cifar10.import_files(SHARED_CIFAR, tmp_path / "data")
        extra = [f"dataset.root={tmp_path / 'data'}", "trainer.batch_size=4"]
    elif experiment.startswith("table3"):
        extra = ["dataset=carvana_synthetic", "dataset.resize=[32,48]", f"dataset.root={tmp_path / 'data'}",
                 "dataset.synthetic.cars=6", "dataset.synthetic.height=64", "dataset.synthetic.width=96",
                 "trainer.batch_size=2"]
    r = go(tmp_path, f"experiment={experiment}", *extra)
    assert r.experiment == experiment and r.scale == "smoke"
    assert json.loads(json.dumps(r.to_dict())) == r.to_dict()


def test_gan_fid_puts_real_and_generated_images_on_one_scale(tmp_path):
    """A DCGAN's data (dataset.normalize=symmetric) and its generator's tanh are both in [-1, 1]: the FID maps
    both to [0, 1], so a generator that hands back the test images themselves scores about 0."""
    from torch import nn

    from frx import data, tasks
    from frx.config import validate

    cfg = validate(compose(["experiment=table4/gan_fr1", "dataset=mnist5k", "dataset.normalize=symmetric",
                            "dataset.resize=[64,64]", "scale=smoke", "scale.fid_samples=200",
                            "dataset.limit_val=200", f"run.cache_dir={tmp_path / 'cache'}"]))
    splits = data.load(cfg.dataset)
    task = tasks.build("gan", cfg, splits, torch.device("cpu"), data.batches)
    real = torch.cat([b[0] for b in task.batches(splits.val, 50)])
    assert real.shape == (200, 1, 64, 64) and real.min() < -0.9  # the run's own scaling, not [0, 1]

    class Replay(nn.Module):
        """Its 'generator' returns the test images in order, as a tanh output would lie: in [-1, 1]."""
        nz = 4

        def __init__(self):
            super().__init__()
            self.seen = 0

        def generator(self, z):
            out = real[self.seen:self.seen + len(z)]
            self.seen += len(z)
            return out

    assert task.evaluate(Replay(), splits.val) < 1.0


def test_gan_generator_lr_sets_the_generators_optimizer_only(tmp_path):
    """trainer.optimizer.generator_lr gives the generator its own Adam lr; the discriminator keeps lr."""
    from frx import data, models, tasks
    from frx.config import validate
    from frx.optim import make_schedulers

    def lrs(experiment, *overrides, steps=0):
        cfg = validate(compose([f"experiment=table4/{experiment}", "dataset=mnist5k", "dataset.normalize=symmetric",
                                "dataset.resize=[64,64]", "scale=smoke", f"run.cache_dir={tmp_path / 'cache'}",
                                *overrides]))
        task = tasks.build("gan", cfg, data.load(cfg.dataset), torch.device("cpu"), data.batches)
        model = models.build_from_config(cfg.model)
        opt_d, opt_g = task.optimizers(model)
        assert opt_g.param_groups[0]["params"][0] is next(model.generator.parameters())
        if steps:  # the trainer's schedules over `steps` steps; the lrs a quarter of the way
            scheds = make_schedulers([opt_d, opt_g], cfg.trainer.scheduler, steps)
            for _ in range(steps // 4):
                for stepper in (opt_d, opt_g, *scheds):  # no gradients: the optimizers' steps change nothing
                    stepper.step()
        return opt_d.param_groups[0]["lr"], opt_g.param_groups[0]["lr"]

    assert lrs("gan_ref") == (2e-4, 2e-4)
    assert lrs("gan_ref", "trainer.optimizer.generator_lr=1e-3") == (2e-4, 1e-3)
    assert lrs("gan_fr1_tuned") == (2e-4, 6e-4)  # the frx-tuned row: the generator's lr only
    cosine = (1 + math.cos(math.pi / 4)) / 2
    assert lrs("gan_fr1_tuned", steps=8) == pytest.approx((2e-4 * cosine, 6e-4 * cosine))  # both, one cosine
    assert lrs("gan_ref", steps=8) == (2e-4, 2e-4)  # the recipe: constant
