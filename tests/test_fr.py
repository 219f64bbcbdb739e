"""The method itself: transforms, mask, schedule, parametrization, codec."""

import copy
import itertools
import math

import numpy as np
import pytest
import scipy.fft as sfft
import torch
from torch import nn

import frx
from frx.fr import (
    CorruptFile,
    TailDropout,
    boundary,
    corner_bound,
    corner_shape,
    dctn,
    find_linear_views,
    full_mask,
    idctn,
    idctn_corner,
    kept_order,
    ratio_to_k,
)
from frx.fr.parametrize import FrequencyWeight


class TinyLeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.fc1 = nn.Linear(8 * 4 * 4, 30)
        self.fc2 = nn.Linear(30, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)  # 28 -> 24 -> 12
        x = torch.max_pool2d(torch.relu(self.bn(self.conv2(x))), 2)  # 12 -> 10 -> 5
        x = x[:, :, :4, :4].flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def make_model(seed=0):
    torch.manual_seed(seed)
    return TinyLeNet()


# ---------------------------------------------------------------- transforms

@pytest.mark.parametrize("seed", range(8))
def test_dct_matches_scipy_on_random_shapes_and_dims(seed):
    rng = np.random.default_rng(seed)
    ndim = 1 + seed % 4
    shape = tuple(rng.integers(1, 7, ndim))
    dims = sorted(rng.choice(ndim, rng.integers(1, ndim + 1), replace=False).tolist())
    x = rng.standard_normal(shape)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(dctn(t, dims).numpy(), sfft.dctn(x, axes=dims, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(idctn(t, dims).numpy(), sfft.idctn(x, axes=dims, norm="ortho"), atol=1e-12)
    np.testing.assert_allclose(idctn(dctn(t, dims), dims).numpy(), x, atol=1e-12)


@pytest.mark.parametrize("shape,dims", [((7,), None), ((6, 9), None), ((5, 4, 3, 3), None), ((5, 4, 3, 3), [0, 2]),
                                         ((3, 8, 4), [1])])
def test_truncated_inverse_equals_full_inverse_of_zero_padded(shape, dims):
    torch.manual_seed(0)
    nd = len(shape)
    dl = list(range(nd)) if dims is None else dims
    corner = tuple(max(1, s // 2) if d in dl else s for d, s in enumerate(shape))
    c = torch.randn(corner, dtype=torch.float64)
    padded = torch.zeros(shape, dtype=torch.float64)
    padded[tuple(slice(0, n) for n in corner)] = c
    torch.testing.assert_close(idctn_corner(c, shape, dims), idctn(padded, dims))


# ---------------------------------------------------------------- mask

def brute_order(shape):
    """Reference ordering: sort all indices by (L1 norm, lexicographic)."""
    return sorted(itertools.product(*map(range, shape)), key=lambda x: (sum(x), x))


def test_mask_tie_order_hand_checked():
    # 3x3, k=4: norm 0 -> (0,0); norm 1 -> (0,1),(1,0); then (0,2) wins the norm-2 tie over (1,1), (2,0)
    m = full_mask((3, 3), 4)
    assert m.nonzero().tolist() == [[0, 0], [0, 1], [0, 2], [1, 0]]
    assert boundary((3, 3), 4) == (2, 1)
    assert corner_bound((3, 3), 4) == 3
    assert boundary((3, 3), 3) == (2, 0) and corner_bound((3, 3), 3) == 2
    # k = numel keeps everything
    assert full_mask((2, 3), 6).all()


@pytest.mark.parametrize("shape", [(5,), (4, 6), (3, 4, 5), (2, 3, 2, 4), (1, 7)])
def test_mask_counts_and_order_match_brute_force(shape):
    order = brute_order(shape)
    numel = math.prod(shape)
    for k in range(1, numel + 1):
        m = full_mask(shape, k)
        assert int(m.sum()) == k
        assert set(map(tuple, m.nonzero().tolist())) == set(order[:k])
        assert all(min(s, corner_bound(shape, k)) == c for s, c in zip(shape, corner_shape(shape, k)))
    # mask order: the kept indices listed L1-then-lexicographic, prefix property
    corner = corner_shape(shape, numel)
    flat = kept_order(shape, numel).tolist()
    assert [tuple(np.unravel_index(i, corner)) for i in flat] == order


def test_ratio_to_k_floors():
    assert ratio_to_k(500, 0.001, 128) == 128
    assert ratio_to_k(400000, 0.001, 256) == 400
    assert ratio_to_k(100, 0.5, 128) == 100  # floor capped at numel
    assert ratio_to_k(10, 1e-9, 1) == 1


def test_alexnet_fc1_mask_builds_from_corner_only():
    shape, k = (4096, 9216), 377_487
    assert corner_shape(shape, k) == (869, 869)
    assert int(frx.fr.corner_mask(shape, k).sum()) == k


# ---------------------------------------------------------------- schedule

def test_schedule_values_over_steps():
    s = TailDropout(epsilon=0.01, gamma=0.1)
    betas = [s.advance() for _ in range(3)]
    assert betas == pytest.approx([1 - 0.1 * 0.99, 0.901 - 0.1 * 0.891, 0.8119 - 0.1 * 0.8019])
    for _ in range(500):
        s.advance()
    assert s.beta == pytest.approx(0.01, abs=1e-12)
    restored = TailDropout(0.01, 0.1)
    restored.load_state_dict(s.state_dict())
    assert restored.beta == s.beta and restored.count == 503


@pytest.mark.parametrize("eps,gamma", [(0, 0.1), (1.5, 0.1), (0.1, 0), (0.1, 2), (-1, 0.5)])
def test_bad_rates_are_errors(eps, gamma):
    with pytest.raises(ValueError, match="must be in"):
        TailDropout(eps, gamma)


def test_schedule_advances_only_in_training_mode():
    model = make_model()
    fr = frx.regularize(model, epsilon=0.01, gamma=0.5)
    model.eval()
    fr.step()
    assert fr.beta == 1.0
    model.train()
    fr.step()
    assert fr.beta == pytest.approx(0.505)
    fr.epoch_end()  # unit is "step": epoch_end does nothing
    assert fr.beta == pytest.approx(0.505)
    fr2 = frx.regularize(make_model(), epsilon=0.01, gamma=0.5, unit="epoch")
    fr2.step()
    assert fr2.beta == 1.0
    fr2.epoch_end()
    assert fr2.beta == pytest.approx(0.505)


# ---------------------------------------------------------------- parametrization

def test_keep_norm_keeps_each_weights_norm_while_coefficients_drop():
    def weight_norms(model):
        return [m.weight.norm().item() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 6 * 6, 10))
    kept_norm, zeroed = copy.deepcopy(plain), copy.deepcopy(plain)
    start = weight_norms(plain)
    handles = [frx.regularize(m, epsilon=0.01, gamma=0.5, min_kept={"conv": 4, "linear": 8}, keep_norm=keep)
               for m, keep in ((kept_norm, True), (zeroed, False))]
    for h in handles:
        for _ in range(6):
            h.step()
    assert handles[0].kept() == handles[1].kept() < handles[0].dense() // 10
    np.testing.assert_allclose(weight_norms(kept_norm), start, rtol=1e-5)
    assert all(z < 0.5 * s for z, s in zip(weight_norms(zeroed), start))  # the paper's drop loses most energy
    # the same kept coefficients, only scaled: each weight is a multiple (> 1) of the zeroed run's
    layers = [(a.weight.detach(), b.weight.detach()) for a, b in zip(kept_norm.modules(), zeroed.modules())
              if isinstance(a, (nn.Conv2d, nn.Linear))]
    for a, b in layers:
        scale = (a.norm() / b.norm()).item()
        assert scale > 1
        torch.testing.assert_close(a, b * scale, rtol=1e-4, atol=1e-6)


def test_nothing_dropped_is_lossless_and_keeps_class_and_keys():
    model = make_model()
    ref = make_model()
    keys = list(ref.state_dict())
    x = torch.randn(4, 1, 28, 28)
    ref.eval(), model.eval()
    fr = frx.regularize(model)
    assert type(model) is TinyLeNet
    assert fr.kept() == fr.dense()
    torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-5)
    frx.export(model)
    assert sorted(model.state_dict()) == sorted(keys)
    assert type(model.conv1) is nn.Conv2d
    torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-5)


def test_floors_and_kept_counts():
    model = make_model()
    fr = frx.regularize(model, epsilon=1e-9, gamma=1.0, min_kept={"conv": 16, "linear": 32})
    model.train()
    fr.step()
    s = frx.summary(model).set_index("name")
    assert s.loc["conv1.weight", "kept"] == 16 and s.loc["fc1.weight", "kept"] == 32
    assert s.loc["conv1.bias", "kind"] == "plain" and s.loc["bn.weight", "kept"] == 8
    assert fr.kept() == 16 + 16 + 32 + 32
    for name, module, p in frx.fr.fr_tensors(model):
        t = module.parametrizations.weight.original.detach().reshape(p.view)
        m = full_mask(p.view, int(p.k)).to(t.dtype)
        torch.testing.assert_close(module.weight, idctn(t * m).reshape(p.shape))


def test_gradients_reach_kept_and_never_dropped():
    model = make_model()
    fr = frx.regularize(model, epsilon=0.05, gamma=0.9, min_kept={"conv": 10, "linear": 20})
    model.train()
    for _ in range(5):
        fr.step()
    model(torch.randn(8, 1, 28, 28)).square().sum().backward()
    for name, module, p in frx.fr.fr_tensors(model):
        g = module.parametrizations.weight.original.grad.reshape(p.view)
        m = full_mask(p.view, int(p.k))
        assert (g[~m] == 0).all(), name
        assert (g[m] != 0).float().mean() > 0.9, name


@pytest.mark.parametrize("shape, dims", [((6, 5, 3, 3), None), ((6, 5, 3, 3), (0, 1)), ((7, 9), None),
                                         ((4, 300), None)])
@pytest.mark.parametrize("dropped", [False, True])
def test_weight_and_its_hand_written_gradient_are_exact(shape, dims, dropped):
    # the same weight as the full inverse DCT of the masked tensor, and gradcheck's numerical gradient
    p = FrequencyWeight(shape, "conv" if len(shape) == 4 else "linear", dims=dims)
    if dropped:
        p.set_k(p.t_numel // 3)
    t = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    m = full_mask(p.t_shape, int(p.k)).reshape([p.view[d] if d in p.dims else 1 for d in range(len(shape))])
    torch.testing.assert_close(p(t), idctn(t.detach() * m, dims=p.dims))
    assert p(t).is_contiguous()
    assert torch.autograd.gradcheck(p, (t,))


def test_dims_subset_keeps_whole_slices():
    conv = nn.Conv2d(4, 6, 3)
    fr = frx.regularize(conv, epsilon=1e-9, gamma=1.0, dims=[2, 3], min_kept={"conv": 24 * 3})
    conv.train()
    fr.step()
    (_, _, p), = frx.fr.fr_tensors(conv)
    assert p.t_shape == (3, 3) and p.slices == 24 and int(p.k) == 3 and fr.kept() == 72
    t = conv.parametrizations.weight.original.detach()
    m = full_mask((3, 3), 3).to(t.dtype)
    torch.testing.assert_close(conv.weight, idctn(t * m, dims=[2, 3]))


def test_eval_mode_reconstructs_weight_once():
    model = make_model()
    frx.regularize(model)
    model.eval()
    with torch.no_grad():
        w1 = model.fc1.weight
        assert model.fc1.weight is w1  # cached
    model.train()
    with torch.no_grad():
        model.fc1.parametrizations.weight.original.add_(1.0)  # an optimizer step invalidates the cache
        assert model.fc1.weight is not w1
    with torch.enable_grad():
        assert model.fc1.weight.requires_grad


def test_include_exclude_and_normal_init():
    model = make_model()
    frx.regularize(model, include=["Conv2d"], exclude=["conv2"], init="normal")
    names = [n for n, _, _ in frx.fr.fr_tensors(model)]
    assert names == ["conv1.weight"]
    std = model.conv1.parametrizations.weight.original.std().item()
    assert 0.05 < std < 0.15
    with pytest.raises(ValueError, match="init"):
        frx.regularize(make_model(), init="zeros")
    with pytest.raises(ValueError, match="no weight"):
        frx.regularize(make_model(), include=["nothing*"])


# ---------------------------------------------------------------- linear views

def test_auto_view_found_by_forward_pass_and_declared_views_win():
    model = make_model()
    x = torch.randn(2, 1, 28, 28)
    # fc1 reads the (8, 4, 4) crop of the last map, flattened; fc2 reads fc1's output: no view
    assert find_linear_views(model, x) == {"fc1.weight": (30, 8, 4, 4)}
    model.fr_views = {"fc1.weight": (30, 2, 64)}
    assert find_linear_views(model, x) == {"fc1.weight": (30, 2, 64)}
    assert find_linear_views(model, None) == {"fc1.weight": (30, 2, 64)}

    class NoMap(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)

        def forward(self, x):
            return self.fc(x.reshape(len(x), 4, 3).flip(1).reshape(len(x), 6, 2).flatten(1))

    # the last map is (6, 2): a view over it is what the layer reads
    assert find_linear_views(NoMap(), torch.randn(2, 12)) == {"fc.weight": (3, 6, 2)}


def test_viewed_tensor_transform_and_mask():
    lin = nn.Linear(2 * 3 * 3, 5)
    ref = lin.weight.detach().clone()
    fr = frx.regularize(lin, epsilon=1e-9, gamma=1.0, linear_view="auto", views={"weight": (5, 2, 3, 3)},
                        min_kept={"linear": 20})
    (_, _, p), = frx.fr.fr_tensors(lin)
    assert p.view == (5, 2, 3, 3)
    t = lin.parametrizations.weight.original.detach()
    np.testing.assert_allclose(t.reshape(5, 2, 3, 3).numpy(), sfft.dctn(ref.reshape(5, 2, 3, 3).numpy(), norm="ortho"),
                               atol=1e-5)
    lin.train()
    fr.step()
    assert fr.kept() == 20
    m = full_mask((5, 2, 3, 3), 20)
    assert set(map(tuple, m.nonzero().tolist())) == set(brute_order((5, 2, 3, 3))[:20])
    torch.testing.assert_close(lin.weight, idctn(t.reshape(5, 2, 3, 3) * m).reshape(5, 18))


# ---------------------------------------------------------------- codec

def trained_fr_model(seed=0, **kw):
    model = make_model(seed)
    fr = frx.regularize(model, epsilon=0.01, gamma=0.5, min_kept={"conv": 20, "linear": 40}, **kw)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()
    for _ in range(6):
        opt.zero_grad()
        model(torch.randn(8, 1, 28, 28)).logsumexp(1).mean().backward()
        opt.step()
        fr.step()
    return model.eval(), fr


def test_pack_unpack_float32_identical_outputs(tmp_path):
    model, fr = trained_fr_model()
    x = torch.randn(5, 1, 28, 28)
    n = frx.pack(model, tmp_path / "m.frx", dtype="float32")
    assert n == (tmp_path / "m.frx").stat().st_size
    plain = make_model(1).eval()
    plain.load_state_dict(frx.unpack(tmp_path / "m.frx"))
    with torch.no_grad():
        assert torch.equal(plain(x), model(x))


def test_pack_unpack_float16_within_rounding(tmp_path):
    model, fr = trained_fr_model()
    x = torch.randn(5, 1, 28, 28)
    frx.pack(model, tmp_path / "m.frx", dtype="float16", plain_dtype="float32")
    plain = make_model(1).eval()
    plain.load_state_dict(frx.unpack(tmp_path / "m.frx"))
    with torch.no_grad():
        ref, out = model(x), plain(x)
    assert not torch.equal(ref, out)
    torch.testing.assert_close(out, ref, atol=5e-3 * ref.abs().max().item(), rtol=0)


def test_packed_payload_is_two_bytes_per_kept_coefficient(tmp_path):
    model, fr = trained_fr_model()
    frx.pack(model, tmp_path / "m.frx", dtype="float16")
    entries = frx.unpack_meta(tmp_path / "m.frx")["tensors"]
    fr_entries = [e for e in entries if e["kind"] == "fr"]
    assert sum(e["bytes"] for e in fr_entries) == 2 * fr.kept()
    assert sorted(e["name"] for e in entries) == sorted(make_model().state_dict())


def test_pack_round_trips_viewed_tensors(tmp_path):
    lin = nn.Linear(18, 5)
    fr = frx.regularize(lin, epsilon=0.3, gamma=1.0, views={"weight": (5, 2, 3, 3)}, min_kept={"linear": 1})
    lin.train()
    fr.step()
    frx.pack(lin, tmp_path / "v.frx", dtype="float32", meta={"model": "lin"})
    head = frx.unpack_meta(tmp_path / "v.frx")
    entry = {e["name"]: e for e in head["tensors"]}["weight"]
    assert entry["view"] == [5, 2, 3, 3] and entry["k"] == 27 and head["meta"] == {"model": "lin"}
    assert torch.equal(frx.unpack(tmp_path / "v.frx")["weight"], lin.weight.detach())


def test_corrupt_truncated_and_existing_files(tmp_path):
    model, _ = trained_fr_model()
    path = tmp_path / "m.frx"
    frx.pack(model, path)
    with pytest.raises(FileExistsError):
        frx.pack(model, path)
    data = bytearray(path.read_bytes())
    (tmp_path / "trunc.frx").write_bytes(data[:-10])
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flip.frx").write_bytes(data)
    (tmp_path / "junk.frx").write_bytes(b"hello world, not a model")
    for name in ["trunc.frx", "flip.frx", "junk.frx"]:
        with pytest.raises(CorruptFile):
            frx.unpack(tmp_path / name)


def test_every_layer_type_lossless_and_round_trips(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(3, 4, 3), nn.Flatten(), nn.Unflatten(1, (4, 1, 1, 6)), nn.Conv3d(4, 5, 1),
                          nn.Flatten(1, 2), nn.ConvTranspose2d(5, 3, 2), nn.Flatten(), nn.Linear(3 * 2 * 7, 4))
    ref = copy.deepcopy(model)
    x = torch.randn(2, 3, 8)
    fr = frx.regularize(model, epsilon=0.2, gamma=0.5, min_kept={"conv": 4, "linear": 8})
    assert [p.kind for _, _, p in frx.fr.fr_tensors(model)] == ["conv", "conv", "conv", "linear"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=1e-5, rtol=1e-5)
    model.train()
    fr.step()
    model.eval()
    frx.pack(model, tmp_path / "m.frx", dtype="float32")
    ref.load_state_dict(frx.unpack(tmp_path / "m.frx"))  # the plain architecture, dense weights
    with torch.no_grad():
        assert torch.equal(ref(x), model(x))


def test_mixed_precision_forward_and_backward():
    model = make_model()
    fr = frx.regularize(model, epsilon=0.01, gamma=0.5)
    model.train()
    fr.step()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, 1, 28, 28))
    out.float().sum().backward()
    g = model.fc1.parametrizations.weight.original.grad
    assert g.dtype == torch.float32 and g.abs().sum() > 0


def test_factored_layers_on_the_fft_path_under_bfloat16_autocast():
    # wide layers take the FFT route of the channel transforms, which has no bfloat16 kernel: it runs in float32
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2048, 2048, 1), nn.Flatten(), nn.Linear(2048 * 4, 1024))
    fr = frx.regularize(model, epsilon=0.5, gamma=1.0)
    model.train()
    fr.step()
    x = torch.randn(8, 2048, 2, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert all(m.forward._choice[1] for m in (model[0], model[2]))  # both layers took the factored route
    dct = frx.fr.dct
    assert dct.use_fft(2048, model[0].parametrizations.weight[0].corner()[1], last=False)
    assert dct.use_fft(2048 * 4, model[2].parametrizations.weight[0].corner()[1])
    out.float().sum().backward()
    assert model[2].parametrizations.weight.original.grad.abs().sum() > 0
    with torch.no_grad():
        ref = frx.export(copy.deepcopy(model))(x)  # float32, W rebuilt
    assert out.dtype == torch.bfloat16 and torch.allclose(out.float(), ref, atol=0.05 * ref.abs().max().item())


def test_keep_gain_holds_each_layers_gain_through_the_drop():
    """Without normalization layers, dropping 99.9 % of the coefficients fades the signal layer by layer;
    with keep_gain each layer is rescaled to its first gain while the counts shrink, then left alone, and a
    checkpoint carries the targets."""
    from torch import nn

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 256))

    x = torch.randn(64, 256)
    spread = {}
    for keep_gain in (False, True):
        model = net()
        fr = frx.regularize(model, epsilon=1e-9, gamma=0.3, min_kept={"linear": 64}, keep_gain=keep_gain)
        model.train()
        for _ in range(40):
            model(x)
            fr.step()
        with torch.no_grad():
            spread[keep_gain] = (model(x) - model[-1].bias).std().item()
    with torch.no_grad():
        before = (net()(x) - net()[-1].bias).std().item()
    assert spread[False] < before / 20 and before / 2 < spread[True] < before * 2
    assert not fr.gain.active and set(fr.state_dict()["gain"]["target"]) == {"0.weight", "2.weight", "4.weight"}
    again = frx.regularize(net(), epsilon=1e-9, gamma=0.3, min_kept={"linear": 64}, keep_gain=True)
    again.load_state_dict(fr.state_dict())
    assert again.gain.target == fr.gain.target and not again.gain.active
    with pytest.raises(ValueError, match="choose one"):
        frx.regularize(net(), keep_gain=True, keep_norm=True)
