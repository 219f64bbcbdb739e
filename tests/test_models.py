import glob
import math
import os

import pytest
import torch
from omegaconf import OmegaConf

import frx.models as M

CONF = os.path.join(os.path.dirname(__file__), "..", "frx", "conf", "model")

# Paper Table "ref" counts live in each model's spec: sum of p.numel() over all parameters (VAE: weights only).
COUNTED = [n for n in M.names() if M.spec(n).params is not None]


def count(name, model):
    if M.spec(name).params_weights_only:
        return sum(p.numel() for k, p in model.named_parameters() if k.endswith(".weight"))
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    return {n: M.build(n) for n in M.names()}


def test_registry_names():
    assert set(COUNTED) | {"smp_unet"} == set(M.names()) == {
        "lenet300", "lenet5", "alexnet", "vgg16", "vgg16_true", "resnet18", "unet", "unet_frereg", "smp_unet", "gan",
        "vae"}
    assert all(M.spec(n).name == n for n in M.names())


@pytest.mark.parametrize("name", COUNTED)
def test_parameter_counts(built, name):
    assert count(name, built[name]) == M.spec(name).params


def test_vae_total_includes_biases(built):
    assert sum(p.numel() for p in built["vae"].parameters()) == 971_200 + 2_424


def _input(name, batch=2):
    s = M.spec(name)
    h, w = s.input_size or (64, 64)
    return torch.randn(batch, s.in_channels, h, w)


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "alexnet", "vgg16", "vgg16_true", "resnet18"])
def test_classifier_forward(built, name):
    m = built[name].eval()
    with torch.no_grad():
        assert m(_input(name)).shape == (2, 10)


@pytest.mark.parametrize("name", ["unet", "smp_unet"])
def test_segmentation_forward(built, name):
    with torch.no_grad():
        assert built[name].eval()(torch.randn(2, 3, 64, 64)).shape == (2, 2, 64, 64)


def test_unet_odd_size(built):
    with torch.no_grad():
        assert built["unet"].eval()(torch.randn(1, 3, 40, 59)).shape == (1, 2, 40, 59)


def test_alexnet_min_input(built):
    m = built["alexnet"].eval()
    with torch.no_grad():
        assert m(torch.randn(1, 3, 63, 63)).shape == (1, 10)
        with pytest.raises(RuntimeError):
            m(torch.randn(1, 3, 62, 62))
    assert M.spec("alexnet").min_input_size == 63


def test_gan(built):
    g = built["gan"].eval()
    assert g.nz == 100
    with torch.no_grad():
        img = g.generator(torch.randn(2, g.nz))
        assert img.shape == (2, 1, 64, 64) and img.abs().max() <= 1
        assert g(torch.randn(2, 100, 1, 1)).shape == (2, 1, 64, 64)
        assert g.discriminator(img).shape == (2,)
    assert count("gan", g.generator) == 3_574_656
    assert count("gan", g.discriminator) == 2_763_520


def test_vae(built):
    v = built["vae"]
    assert v.latent_dim == 20
    recon, mu, logvar = v.train()(torch.rand(2, 1, 28, 28))
    assert recon.shape == (2, 784) and mu.shape == (2, 20) and logvar.shape == (2, 20)
    assert v(torch.rand(2, 784))[0].shape == (2, 784)
    assert v.decode(torch.randn(3, 20)).shape == (3, 784)
    v.eval()
    x = torch.rand(2, 784)
    assert torch.equal(v(x)[0], v(x)[0])  # eval uses mu: deterministic


def test_fr_views_match_the_flattened_map(built):
    seen = {}

    def keep(key, which):
        def hook(mod, inp, out):
            seen[key] = inp[0] if which == "in" else out
        return hook

    m = built["lenet5"].eval()
    m.fc1.register_forward_hook(keep("fc1", "in"))
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        m(x)
        fmap = torch.nn.functional.max_pool2d(torch.relu(m.conv2(
            torch.nn.functional.max_pool2d(torch.relu(m.conv1(x)), 2))), 2)
    view = M.LeNet5.fr_views["fc1.weight"]
    assert tuple(fmap.shape[1:]) == view[1:] and view[0] == m.fc1.out_features
    assert torch.equal(seen["fc1"], fmap.flatten(1))

    a = built["alexnet"].eval()
    a.avgpool.register_forward_hook(keep("pool", "out"))
    a.classifier[1].register_forward_hook(keep("fc", "in"))
    with torch.no_grad():
        a(torch.randn(1, 3, 64, 64))
    view = M.AlexNet.fr_views["classifier.1.weight"]
    assert tuple(seen["pool"].shape[1:]) == view[1:]
    assert torch.equal(seen["fc"], seen["pool"].flatten(1))
    params = dict(a.named_parameters())
    assert math.prod(view) == params["classifier.1.weight"].numel()


def test_unknown_model_lists_known():
    with pytest.raises(ValueError, match="lenet5"):
        M.build("lenet6")
    with pytest.raises(ValueError, match="known models"):
        M.spec("nope")


def test_smp_unet_never_pretrained():
    with pytest.raises(ValueError):
        M.build("smp_unet", encoder_weights="imagenet")


def test_kwargs_reach_builder():
    assert M.build("lenet5", num_classes=7).fc2.out_features == 7
    assert M.build("vgg16", num_classes=100).classifier.out_features == 100
    assert M.build("unet", num_classes=1, base=8).outc.out_channels == 1


CONFIGS = sorted(glob.glob(os.path.join(CONF, "*.yaml")))


def test_every_model_has_a_config():
    assert {os.path.basename(p)[:-5] for p in CONFIGS} == set(M.names())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: os.path.basename(p))
def test_model_config_builds(built, path):
    """A model config holds the name and the builder's arguments; the metadata is the spec's."""
    cfg = OmegaConf.create({"model": OmegaConf.load(path)}).model  # as composed under the `model` key
    assert set(cfg) == {"name", "kwargs"}
    s = M.spec(cfg.name)
    assert M.spec_from_config(cfg) == s  # the config's arguments agree with the spec
    model = M.build_from_config(cfg)
    assert type(model) is type(built[cfg.name])
    assert count(cfg.name, model) == count(cfg.name, built[cfg.name])


def test_spec_follows_the_builder_arguments():
    cfg = {"name": "lenet5", "kwargs": {"in_channels": 3, "num_classes": 7}}
    assert (M.spec_from_config(cfg).in_channels, M.spec_from_config(cfg).num_classes) == (3, 7)
    assert M.build_from_config(cfg).fc2.out_features == 7


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="twice"):
        M.register(M.spec("lenet5"))(lambda: None)


def test_vgg16_config_says_19_layers():
    cfg = OmegaConf.load(os.path.join(CONF, "vgg16.yaml"))
    assert "19" in M.spec("vgg16").arch and cfg.kwargs.config == "vgg19"


def test_alexnet_kaiming_init_keeps_the_signal():
    """torchvision's init fades AlexNet's signal ~6x in variance per layer; init=kaiming keeps it."""
    x = torch.randn(8, 3, 64, 64)
    spread = {}
    for init in ("torchvision", "kaiming"):
        torch.manual_seed(0)
        with torch.no_grad():
            spread[init] = M.build("alexnet", init=init).eval()(x).std(0).mean().item()
    assert spread["torchvision"] < 1e-2 < 0.1 < spread["kaiming"] < 10
    with pytest.raises(ValueError, match="init must be one of"):
        M.build("alexnet", init="xavier")
    with pytest.raises(ValueError, match="model.kwargs.init must be one of torchvision, kaiming"):
        M.check_config({"name": "alexnet", "kwargs": {"init": "xavier"}})
