"""frx.deploy: FR layers as small factors (or dense), same outputs, from a live model or a packed file."""

import math

import pytest
import torch
from torch import nn

import frx
from frx.fr import FactoredConv, FactoredLinear, count_macs
from frx.fr.deploy import factor, forms
from frx.models import build


def rel_diff(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def at_budget(model, epsilon, min_kept, seed=0, **kw):
    """Regularize and jump straight to the floor epsilon, with random coefficients."""
    fr = frx.regularize(model, epsilon=epsilon, gamma=1.0, min_kept=min_kept, init="normal",
                        generator=torch.Generator().manual_seed(seed), **kw)
    model.train()
    fr.step()
    return model.eval()


class Mixed(nn.Module):
    """Every layer type FR handles, with strides, padding and padding modes."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(3, 24, 3, padding=1)
        self.c2 = nn.Conv2d(24, 32, 3, stride=2, padding=1, padding_mode="reflect")
        self.c3 = nn.Conv3d(32, 20, (1, 3, 3), padding=(0, 1, 1), bias=False)
        self.t = nn.ConvTranspose2d(20, 16, 3, stride=2, padding=1, output_padding=1)
        self.fc = nn.Linear(16 * 8 * 8, 40)

    def forward(self, x):  # x: (N, 3, 256)
        x = torch.relu(self.c1(x)).reshape(-1, 24, 16, 16)
        x = torch.relu(self.c2(x)).unsqueeze(2)  # (N, 32, 1, 8, 8)
        x = torch.relu(self.c3(x)).squeeze(2)
        x = torch.relu(self.t(x))[:, :, ::2, ::2]  # (N, 16, 8, 8)
        return self.fc(x.flatten(1))


def test_factored_equals_dense_on_every_layer_type_and_keeps_the_model():
    torch.manual_seed(0)
    model = at_budget(Mixed(), 0.02, {"conv": 16, "linear": 64})
    x = torch.randn(3, 3, 256)
    with torch.no_grad():
        ref = model(x)
    deployed = frx.deploy(model, sample_input=x, form="factored")
    assert forms(deployed) == {n: "factored" for n in ("c1", "c2", "c3", "t", "fc")}
    assert not any("parametrizations" in k for k in deployed.state_dict())
    with torch.no_grad():
        assert rel_diff(deployed(x), ref) <= 1e-5
        assert torch.equal(model(x), ref)  # the regularized model is untouched and still regularized
    assert len(list(frx.fr.fr_tensors(model))) == 5
    assert isinstance(deployed.t.conv, nn.ConvTranspose2d) and deployed.t.conv.output_padding == (1, 1)


def test_dims_subset_and_full_corner_dims_fold_into_the_core():
    torch.manual_seed(1)
    lin = at_budget(nn.Linear(300, 200), 0.3, {"linear": 1}, dims=[1])  # outputs untransformed
    f = factor(lin, (200, 300), (1,), int(lin.parametrizations.weight[0].k))
    assert f.expand is None and f.project.shape[1] == 300 and f.core.shape[0] == 200
    x = torch.randn(5, 300)
    with torch.no_grad():
        assert rel_diff(f(x), lin(x)) <= 1e-5
    conv = at_budget(nn.Conv2d(64, 8, 3), 0.05, {"conv": 1}, dims=[1, 2, 3])
    f = factor(conv, (8, 64, 3, 3), (1, 2, 3), int(conv.parametrizations.weight[0].k))
    assert f.expand is None and f.project is not None and f.conv.bias is not None
    x = torch.randn(2, 64, 9, 9)
    with torch.no_grad():
        assert rel_diff(f(x), conv(x)) <= 1e-5


def test_factors_rebuild_the_dense_weight_for_a_shape_aware_view():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 28, 28)
    model = at_budget(build("lenet5"), 0.001, {"conv": 128, "linear": 256}, linear_view="auto", sample_input=x)
    p = model.fc1.parametrizations.weight[0]
    assert p.view == (500, 50, 4, 4)
    deployed = frx.deploy(model, form="factored")
    fc1 = deployed.fc1
    assert isinstance(fc1, FactoredLinear)
    corner = p.corner()
    assert fc1.project.shape == (math.prod(corner[1:]), 800) and fc1.expand.shape == (500, corner[0])
    w = fc1.expand @ fc1.core @ fc1.project
    torch.testing.assert_close(w, model.fc1.weight.detach(), atol=1e-6, rtol=0)
    with torch.no_grad():
        assert rel_diff(deployed(x), model(x)) <= 1e-5


def test_views_that_do_not_factor_stay_dense():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(12, 40), nn.Conv1d(4, 6, 2, groups=2), nn.Conv1d(6, 8, 3))
    views = {"0.weight": (20, 24), "2.weight": (8, 2, 3, 3)}  # out=40 never splits from in=12; a reshaped kernel
    at_budget(seq, 0.3, {"conv": 1, "linear": 1}, views=views)
    for i, shape in enumerate([(40, 12), (6, 2, 2), (8, 6, 3)]):
        p = seq[i].parametrizations.weight[0]
        assert factor(seq[i], p.view, p.dims, int(p.k)) is None
    deployed = frx.deploy(seq, form="factored")
    assert forms(deployed) == {"0": "dense", "1": "dense", "2": "dense"}
    x = torch.randn(2, 4, 10)
    with torch.no_grad():
        lin_x = torch.randn(2, 12)
        assert torch.equal(deployed[0](lin_x), seq[0](lin_x))
        assert torch.equal(deployed[2](deployed[1](x)), seq[2](seq[1](x)))


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_deploy_from_a_packed_file(tmp_path, dtype):
    torch.manual_seed(0)
    x = torch.randn(4, 1, 28, 28)
    model = at_budget(build("lenet5"), 0.001, {"conv": 128, "linear": 256}, linear_view="auto", sample_input=x)
    path = tmp_path / f"m.{dtype}.frx"
    frx.pack(model, path, dtype=dtype, plain_dtype="float32")
    arch = build("lenet5")
    deployed = frx.deploy(arch, packed=path, sample_input=x, form="factored")
    assert isinstance(deployed.fc1, FactoredLinear) and isinstance(deployed.conv2, FactoredConv)
    dense = build("lenet5").eval()
    dense.load_state_dict(frx.unpack(path))
    with torch.no_grad():
        assert rel_diff(deployed(x), dense(x)) <= 1e-5
        if dtype == "float32":
            assert rel_diff(deployed(x), model(x)) <= 1e-5
    assert not isinstance(arch.fc1, FactoredLinear)  # the architecture given is left as it was
    with pytest.raises(ValueError, match="plain architecture"):
        frx.deploy(model, packed=path)


def test_cost_model_factors_only_what_saves():
    torch.manual_seed(0)
    net = at_budget(nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10)), 0.001, {"linear": 256})
    x = torch.randn(2, 1024)
    deployed = frx.deploy(net, sample_input=x)
    assert forms(deployed) == {"0": "factored", "2": "dense"}
    macs, dense_macs = count_macs(deployed, x), count_macs(frx.deploy(net, form="dense"), x)
    assert dense_macs == {"0": 1024 * 1024, "2": 10240}
    f = deployed[0]
    assert macs["0"] == f.project.numel() + f.core.numel() + f.expand.numel() < dense_macs["0"] / 10
    assert forms(frx.deploy(net, sample_input=x, min_saving=10**7))["0"] == "dense"
    # convs are costed on their feature maps: the same layer saves more on a bigger map
    conv = at_budget(nn.Conv2d(64, 64, 3, padding=1), 0.001, {"conv": 128})
    assert forms(frx.deploy(conv, sample_input=torch.randn(1, 64, 1, 1))) == {"": "dense"}
    assert forms(frx.deploy(conv, sample_input=torch.randn(1, 64, 32, 32))) == {"": "factored"}


def test_bad_input_is_refused_with_a_clear_line():
    with pytest.raises(ValueError, match="form"):
        frx.deploy(at_budget(nn.Linear(4, 4), 0.5, {"linear": 1}), form="fast")
    with pytest.raises(ValueError, match="no regularized weight"):
        frx.deploy(nn.Linear(4, 4))
