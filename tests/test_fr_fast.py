"""The fast paths of FR: FFT transforms for long dims and layers that never build W."""

import copy
import math

import numpy as np
import pytest
import scipy.fft as sfft
import torch
from torch import nn

import frx
from frx.fr import dctn, full_mask, idctn, idctn_corner
from frx.fr.dct import _cos_rows, _inverse_columns, contract, expand, use_fft
from frx.fr.factors import FactoredForward, Factors

# ---------------------------------------------------------------- FFT transforms

@pytest.mark.parametrize("n, shape, dim", [(256, (3, 2, 256), 2), (257, (3, 2, 257), 2), (300, (3, 2, 300), 2),
                                           (1023, (3, 1023), 1), (1024, (3, 1024, 1), 1), (1500, (3, 1500, 2), 1)])
def test_fft_transform_matches_scipy_along_long_dims(n, shape, dim):
    last = math.prod(shape[dim + 1:]) == 1
    assert use_fft(n, n, last)  # these sizes take the FFT path (a middle dim only from ~1,210 on)
    rng = np.random.default_rng(n)
    x = rng.standard_normal(shape)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(dctn(t, [dim]).numpy(), sfft.dctn(x, axes=[dim], norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(idctn(t, [dim]).numpy(), sfft.idctn(x, axes=[dim], norm="ortho"), atol=1e-12)
    for c in (n // 2, n // 2 + 1, n - n // 2 + 1, n - 1):  # both halves of the spectrum
        if not use_fft(n, c, last):
            continue
        padded = np.zeros_like(x)
        padded.swapaxes(dim, -1)[..., :c] = x.swapaxes(dim, -1)[..., :c]
        np.testing.assert_allclose(expand(t.narrow(dim, 0, c), dim, n).numpy(),
                                   sfft.idct(padded, axis=dim, norm="ortho"),
                                   atol=1e-12)
        np.testing.assert_allclose(contract(t, dim, c).numpy(),
                                   sfft.dct(x, axis=dim, norm="ortho").swapaxes(dim, -1)[..., :c]
                                   .swapaxes(dim, -1), atol=1e-12)


def test_fft_and_matrix_paths_agree_in_float32():
    torch.manual_seed(0)
    n, c = 2048, 1500
    assert use_fft(n, c)
    x = torch.randn(64, c)
    g = torch.randn(64, n)
    mat = _inverse_columns(n, c, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(expand(x, 1, n), x @ mat.T, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(contract(g, 1, c), g @ _cos_rows(n, c, torch.device("cpu"), torch.float32).T,
                               atol=2e-5, rtol=1e-4)


def test_fft_corner_inverse_equals_full_inverse():
    torch.manual_seed(0)
    shape, corner = (600, 5, 3), (450, 4, 3)
    c = torch.randn(corner, dtype=torch.float64)
    padded = torch.zeros(shape, dtype=torch.float64)
    padded[:450, :4] = c
    ref = sfft.idctn(padded.numpy(), norm="ortho")
    np.testing.assert_allclose(idctn_corner(c, shape).numpy(), ref, atol=1e-12)


# ---------------------------------------------------------------- factored layers

def _pair(layer, **kw):
    """The same regularized layer twice: with the factored forward and with W rebuilt."""
    a = layer.double()
    b = copy.deepcopy(a)
    frx.regularize(a, **kw)
    frx.regularize(b, factored=False, **kw)
    b.load_state_dict(a.state_dict())
    return a, b


def _set_ratio(model, ratio):
    for _, _, p in frx.fr.fr_tensors(model):
        p.set_k(max(1, round(ratio * p.t_numel)))


CASES = [
    (lambda: nn.Linear(300, 200), (7, 300), {}),
    (lambda: nn.Linear(300, 200, bias=False), (2, 3, 300), {}),
    (lambda: nn.Linear(48, 20), (5, 48), {"views": {"weight": (20, 3, 4, 4)}}),
    (lambda: nn.Conv2d(6, 10, 3, padding=1), (2, 6, 9, 9), {}),
    (lambda: nn.Conv2d(6, 10, 3, stride=2, bias=False), (2, 6, 9, 9), {}),
    (lambda: nn.Conv2d(6, 10, 3, padding=1), (2, 6, 7, 7), {"dims": [0, 2, 3]}),
    (lambda: nn.Conv2d(6, 10, (1, 1)), (2, 6, 5, 5), {"dims": [1]}),
    (lambda: nn.Linear(48, 20), (5, 48), {"views": {"weight": (4, 5, 3, 16)}}),  # outputs over two view dims
    (lambda: nn.Linear(48, 20), (5, 48), {"views": {"weight": (4, 5, 3, 16)}, "dims": [1, 2]}),
    (lambda: nn.Conv1d(6, 10, 3, padding=1), (2, 6, 9), {}),
    (lambda: nn.Conv3d(4, 6, 3, stride=2), (2, 4, 7, 7, 7), {}),
]


@pytest.mark.parametrize("make,in_shape,kw", CASES)
@pytest.mark.parametrize("ratio", [1.0, 0.3, 0.02])
def test_factored_layer_equals_rebuilt_weight(make, in_shape, kw, ratio):
    torch.manual_seed(0)
    a, b = _pair(make(), **kw)
    _set_ratio(a, ratio)
    _set_ratio(b, ratio)
    p = a.parametrizations.weight[0]
    assert isinstance(a.__dict__.get("forward"), FactoredForward)
    x = torch.randn(in_shape, dtype=torch.float64)
    f, tc = Factors.of(a, p.view, p.dims, p._k), p.masked_corner(a.parametrizations.weight.original)
    ya = f.linear(x, tc, a.bias) if isinstance(a, nn.Linear) else f.conv(x, tc, a)  # whatever the cost count says
    yb = b(x)
    torch.testing.assert_close(ya, yb, atol=1e-12, rtol=1e-10)
    g = torch.randn_like(yb)
    ya.backward(g)
    yb.backward(g)
    ta, tb = a.parametrizations.weight.original, b.parametrizations.weight.original
    torch.testing.assert_close(ta.grad, tb.grad, atol=1e-12, rtol=1e-10)
    # gradients reach only the kept coefficients
    kept = full_mask(p.t_shape, int(p.k))
    dims = p.dims
    perm = [d for d in range(len(p.view)) if d not in dims] + list(dims)
    dropped = ~kept.expand(*[p.view[d] for d in perm if d not in dims], *p.t_shape)
    grad = ta.grad.reshape(p.view).permute(perm)
    assert not grad[dropped].any()
    if a.bias is not None:
        torch.testing.assert_close(a.bias.grad, b.bias.grad)


def cost(layer, in_shape, out_shape, training=True):
    p = layer.parametrizations.weight[0]
    return Factors.of(layer, p.view, p.dims, p._k).cost(in_shape, out_shape, training)


def test_cost_count_picks_the_factored_route_for_big_layers_and_small_corners():
    torch.manual_seed(0)
    lin = nn.Linear(4096, 4096)
    frx.regularize(lin)
    p = lin.parametrizations.weight[0]
    fact, rebuilt = cost(lin, (32, 4096), (32, 4096))
    assert fact < rebuilt / 2  # at beta = 1 the rebuild costs more than the layer itself
    p.set_k(round(0.001 * p.t_numel))
    fact, rebuilt = cost(lin, (32, 4096), (32, 4096))
    assert fact < rebuilt / 10  # at 0.1 % the factored layer is far cheaper than the plain one (3 * 32 * 4096^2)
    assert fact < 3 * 32 * 4096 * 4096 / 10
    conv = nn.Conv2d(3, 8, 3)
    frx.regularize(conv)
    fact, rebuilt = cost(conv, (512, 3, 30, 30), (512, 8, 28, 28))
    assert fact > rebuilt  # a tiny weight on a big input: rebuilding W is cheaper
    # evaluation: the products once; W is built once for all batches, so only the dense product counts
    fact1, dense1 = cost(lin, (32, 4096), (32, 4096), training=False)
    assert dense1 == 32 * 4096 * 4096 and fact1 < dense1 / 10
    p.set_k(p.t_numel)  # nothing dropped: the factored route (two full DCTs and the core) costs more
    fact1, dense1 = cost(lin, (32, 4096), (32, 4096), training=False)
    assert fact1 > dense1
    assert cost(lin, (32, 4096), (32, 4096))[0] < cost(lin, (32, 4096), (32, 4096))[1]  # a training step: less


def test_factored_forward_is_used_in_training_and_left_by_export():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    keys = set(model.state_dict())
    frx.regularize(model)
    assert all(isinstance(m.__dict__.get("forward"), FactoredForward) for m in (model[0], model[2]))
    x = torch.randn(64, 512)
    y = model(x)
    assert model[0].forward._choice[1]  # the big layer trained without building W
    with torch.no_grad():
        torch.testing.assert_close(model(x), y)  # inference builds W once: same output
    clone = copy.deepcopy(model)
    assert clone[0].forward.module is clone[0]
    torch.testing.assert_close(clone(x), y)
    frx.export(model)
    assert "forward" not in model[0].__dict__ and set(model.state_dict()) == keys
    torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-5)


def test_factored_inference_takes_the_cheaper_route_and_ends_with_its_context():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    frx.regularize(model)
    frx.set_k(model, {"0.weight": 2621, "2.weight": 51})  # 1 % kept
    x = torch.randn(64, 512)
    first = model[0].forward
    model(x)  # a training forward: its route is chosen for this shape
    assert first._choice == (((64, 512), 2621, True), True)
    with torch.no_grad():
        w = model[0].weight  # W rebuilt from the kept coefficients
        exact = nn.functional.linear(x, w, model[0].bias)
        assert torch.equal(model[0](x), exact)  # by default inference builds W: the packed model's output
        with frx.fr.factored_inference(model):
            torch.testing.assert_close(model[0](x), exact, atol=1e-5, rtol=1e-5)
            assert first._choice == (((64, 512), 2621, False), True)  # chosen anew, for one forward pass
            with frx.fr.factored_inference(model):  # nested: the outer context still holds after the inner one
                pass
            assert first.factored_inference
        assert torch.equal(model[0](x), exact)  # and back after the context
        with pytest.raises(RuntimeError), frx.fr.factored_inference(model):
            raise RuntimeError("an evaluation that fails")
        assert not first.factored_inference
    model(x)
    assert first._choice == (((64, 512), 2621, True), True)


def test_factored_off_keeps_the_class_forward():
    lin = nn.Linear(64, 64)
    frx.regularize(lin, factored=False)
    assert "forward" not in lin.__dict__


def test_regularize_init_is_the_dct_of_a_long_weight():
    torch.manual_seed(0)
    lin = nn.Linear(1200, 300)
    w = lin.weight.detach().double().numpy().copy()
    frx.regularize(lin)
    t = lin.parametrizations.weight.original.detach().double().numpy()
    np.testing.assert_allclose(t, sfft.dctn(w, norm="ortho"), atol=1e-5)
    np.testing.assert_allclose(lin.weight.detach().numpy(), w, atol=1e-5)
    assert math.isclose(float(np.abs(t).sum()), float(np.abs(sfft.dctn(w, norm="ortho")).sum()), rel_tol=1e-5)


def test_k_host_copy_follows_the_buffer_through_state_dict():
    # forward reads a host copy of k (no device sync); loading a state dict must refresh it
    torch.manual_seed(0)
    a, b = nn.Linear(16, 8), nn.Linear(16, 8)
    frx.regularize(a), frx.regularize(b)
    pa = a.parametrizations.weight[0]
    pa.set_k(10)
    b.load_state_dict(a.state_dict())
    pb = b.parametrizations.weight[0]
    assert pb.kept == 10 and int(pb.k) == 10
    x = torch.randn(3, 16)
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-6)
