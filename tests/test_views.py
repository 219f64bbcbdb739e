"""Shape-aware FR: linear layers that read a flattened (C, H, W) map are transformed over (out, C, H, W)."""

import numpy as np
import scipy.fft as sfft
import torch

import frx
from frx.fr import find_linear_views, full_mask
from frx.models import build


def detected(name, size):
    model = build(name)
    model.fr_views = {}  # hide the declared views: the forward pass alone must find them
    return find_linear_views(model, torch.randn(1, 3 if name == "alexnet" else 1, size, size))


def test_auto_finds_lenet5_and_alexnet_maps():
    assert detected("lenet5", 28) == {"fc1.weight": (500, 50, 4, 4)}
    assert detected("alexnet", 64) == {"classifier.1.weight": (4096, 256, 6, 6)}
    # and the models' declared views agree with what the forward pass finds
    assert build("lenet5").fr_views == detected("lenet5", 28)


def test_auto_view_on_lenet5_transform_mask_and_pack(tmp_path):
    torch.manual_seed(0)
    model = build("lenet5")
    w0 = model.fc1.weight.detach().clone()
    fr = frx.regularize(model, epsilon=1e-9, gamma=1.0, linear_view="auto",
                        sample_input=torch.randn(2, 1, 28, 28))
    t = model.fc1.parametrizations.weight.original.detach()
    np.testing.assert_allclose(t.reshape(500, 50, 4, 4).numpy(),
                               sfft.dctn(w0.reshape(500, 50, 4, 4).numpy(), norm="ortho"), atol=1e-5)
    model.train()
    fr.step()
    s = frx.summary(model).set_index("name")
    assert s.loc["fc1.weight", "view"] == (500, 50, 4, 4) and s.loc["fc1.weight", "kept"] == 256
    assert fr.kept() == 128 + 128 + 256 + 256
    m = full_mask((500, 50, 4, 4), 256)
    torch.testing.assert_close(model.fc1.weight,
                               frx.fr.idctn(t.reshape(500, 50, 4, 4) * m).reshape(500, 800))
    model.eval()
    frx.pack(model, tmp_path / "l5.frx", dtype="float32")
    entry = {e["name"]: e for e in frx.unpack_meta(tmp_path / "l5.frx")["tensors"]}["fc1.weight"]
    assert entry["view"] == [500, 50, 4, 4] and entry["k"] == 256
    plain = build("lenet5").eval()
    plain.load_state_dict(frx.unpack(tmp_path / "l5.frx"))
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(plain(x), model(x))


def test_auto_view_of_a_first_linear_layer_reading_the_flattened_input():
    """LeNet-300's fc1 reads the 28x28 image flattened: its auto view is (300, 1, 28, 28); the others read
    vectors and stay flat."""
    from frx.models import build

    views = frx.fr.find_linear_views(build("lenet300"), torch.zeros(2, 1, 28, 28))
    assert views == {"fc1.weight": (300, 1, 28, 28)}
    assert frx.fr.find_linear_views(build("lenet300"), torch.zeros(2, 784)) == {}  # a flat input is no map


def test_vae_decoder_output_is_viewed_as_an_image_with_auto_only():
    """The VAE's fc5 writes the 28x28 image (its rows are pixels): auto views it (28, 28, 400) and fc1 (which
    reads the image) (400, 1, 28, 28); the paper's flat views stay (out, in)."""
    from frx.fr import fr_tensors

    views = {}
    for linear_view in ("auto", "flat"):
        model = build("vae")
        frx.regularize(model, epsilon=0.1, linear_view=linear_view, sample_input=torch.rand(2, 1, 28, 28))
        views[linear_view] = {n: p.view for n, _, p in fr_tensors(model)}
    assert views["auto"]["fc5.weight"] == (28, 28, 400) and views["auto"]["fc1.weight"] == (400, 1, 28, 28)
    assert views["auto"]["fc2.weight"] == (400, 400)
    assert all(len(v) == 2 for v in views["flat"].values())
