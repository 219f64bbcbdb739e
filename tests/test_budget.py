"""One global budget spread over the tensors (`fr.budget=global`), against the paper's ratio per tensor."""

import copy

import pytest
import torch
from torch import nn

import frx
from frx.fr.budget import falling_scores, shell_sizes, spread


def test_scores_fall_along_the_mask_order_and_a_late_peak_lifts_what_precedes_it():
    s = falling_scores(torch.tensor([9.0, 0.0, 0.0, 0.0, 3.0]), torch.ones(5, dtype=torch.long))
    torch.testing.assert_close(s, torch.tensor([9.0, 3.0, 3.0, 3.0, 3.0], dtype=torch.float64))


def test_a_shell_scores_by_its_mean():
    # a (2, 3) tensor's mask order has shells of 1, 2, 2, 1 coefficients (L1 norms 0-3)
    assert shell_sizes((2, 3), 6).tolist() == [1, 2, 2, 1] and shell_sizes((2, 3), 4).tolist() == [1, 2, 1]
    s = falling_scores(torch.tensor([6.0, 0.0, 2.0, 1.0, 1.0, 2.0]), shell_sizes((2, 3), 6))
    # shell means 6, 1, 1, 2, then the running maximum from the tail
    torch.testing.assert_close(s, torch.tensor([6.0, 2.0, 2.0, 2.0, 2.0, 2.0], dtype=torch.float64))


def test_spread_hand_checked():
    a, b = torch.tensor([4.0, 1.0, 1.0, 0.0]), torch.tensor([9.0, 0.0, 0.0, 0.0, 3.0])
    shapes = [(4,), (5,)]
    # scores: a 4, 1, 1, 0; b 9, 3 x 4. Beyond the floors (1 each) 3 positions: b's
    assert spread([a, b], shapes, floors=[1, 1], costs=[1, 1], total=5) == [1, 4]
    # b's positions cost 2 weights each: after the floors (1 + 2) two weights are left, one position of b
    assert spread([a, b], shapes, floors=[1, 1], costs=[1, 2], total=5) == [1, 2]
    assert spread([a, b], shapes, floors=[4, 1], costs=[1, 1], total=5) == [4, 1]  # only the floors
    with pytest.raises(ValueError, match="floors keep 6 weights, more than the total 5"):
        spread([a, b], shapes, floors=[4, 2], costs=[1, 1], total=5)


@pytest.mark.parametrize("seed", range(5))
def test_spread_keeps_floors_prefixes_and_spends_the_total(seed):
    g = torch.Generator().manual_seed(seed)
    energies = [torch.rand(n, generator=g) ** 4 for n in (50, 7, 300)]
    floors, total = [3, 7, 10], 120
    shapes = [(n, 1) for n in (50, 7, 300)]  # shells of one coefficient each
    ks = spread(energies, shapes, floors, [1, 1, 1], total)
    assert sum(ks) == total
    assert all(f <= k <= len(e) for f, k, e in zip(floors, ks, energies))
    # the taken set is the best by score: nothing left out scores above anything taken beyond a floor
    scores = [falling_scores(e, shell_sizes(shape, len(e))) for e, shape in zip(energies, shapes)]
    taken = min(s[f:k].min() for s, f, k in zip(scores, floors, ks) if k > f)
    left_out = max(s[k:].max() for s, k in zip(scores, ks) if k < len(s))
    assert taken >= left_out


def smooth_and_noisy(seed=0):
    """fc1's weight is a few low frequencies (a smooth function of its indices), fc2's is noise."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    with torch.no_grad():
        i = torch.linspace(0, 1, 64)
        model[0].weight.copy_(torch.outer(torch.cos(3 * i), torch.sin(2 * i)) + 0.01 * torch.randn(64, 64))
    return model


def test_global_budget_keeps_the_per_tensor_total_and_moves_it_to_where_the_energy_is():
    per_tensor, spread_out = smooth_and_noisy(), smooth_and_noisy()
    settings = dict(epsilon=0.1, gamma=0.3, min_kept={"linear": 16})
    a = frx.regularize(per_tensor, **settings)
    b = frx.regularize(spread_out, budget="global", **settings)
    before = list(frx.get_k(spread_out).values())
    for _ in range(40):
        a.step(), b.step()
        now = list(frx.get_k(spread_out).values())
        assert b.kept() == a.kept()  # the same total at every step
        assert all(16 <= k <= k0 for k, k0 in zip(now, before))  # floors held, never growing back
        before = now
    ks, ref = frx.get_k(spread_out), frx.get_k(per_tensor)
    assert ref == {"0.weight": 410, "2.weight": 410}
    assert ks["0.weight"] < 100 and ks["2.weight"] > 720  # the smooth weight needs few coefficients
    for name, module, p in frx.fr.fr_tensors(spread_out):  # every tensor keeps its low-frequency corner
        t = module.parametrizations.weight.original.detach()
        torch.testing.assert_close(module.weight, frx.fr.idctn(t * frx.fr.full_mask(p.view, int(p.k))))


def test_global_budget_resumes_with_the_kept_counts_it_saved():
    model = smooth_and_noisy()
    fr = frx.regularize(model, budget="global", epsilon=0.1, gamma=0.3, min_kept={"linear": 16})
    for _ in range(5):
        fr.step()
    model_state, fr_state, ks = copy.deepcopy(model.state_dict()), fr.state_dict(), frx.get_k(model)
    again = smooth_and_noisy(seed=1)  # other coefficients: a new spread would differ
    fr2 = frx.regularize(again, budget="global", epsilon=0.1, gamma=0.3, min_kept={"linear": 16})
    again.load_state_dict(model_state)
    fr2.load_state_dict(fr_state)
    assert frx.get_k(again) == ks
    fr.step(), fr2.step()
    assert frx.get_k(again) == frx.get_k(model)


def test_unknown_budget_is_refused_before_the_model_changes():
    model = smooth_and_noisy()
    with pytest.raises(ValueError, match="budget must be one of"):
        frx.regularize(model, budget="per-layer")
    assert not list(frx.fr.fr_tensors(model))


def test_a_run_with_the_global_budget_keeps_the_paper_total(tmp_path):
    """frx-train with fr.budget=global: the record's total is the per-tensor rule's, spread differently."""
    from frx.fr.mask import ratio_to_k
    from frx.train import compose, run

    from conftest import tmp_overrides

    r = run(compose(tmp_overrides(tmp_path, "model=lenet300", "scale=smoke", "fr.epsilon=0.015", "fr.gamma=1.0",
                                  "fr.budget=global", "trainer.epochs=1", "trainer.max_steps_per_epoch=3")))
    assert r.config["fr"]["budget"] == "global"
    per_tensor = [ratio_to_k(t["dense"], 0.015, 256) for t in r.tensors]
    assert r.counts["kept_weights"] == sum(t["kept"] for t in r.tensors) == sum(per_tensor)
    assert [t["kept"] for t in r.tensors] != per_tensor
    assert all(t["kept"] >= 256 for t in r.tensors)


def test_layers_of_unequal_slices_never_grow_back_and_resume_as_saved():
    """Conv kernels transformed over their channels only: a kept position costs 9 or 25 weights."""
    def model(seed):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Conv2d(8, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 5), nn.ReLU(), nn.Conv2d(16, 4, 3))

    settings = dict(budget="global", epsilon=0.05, gamma=0.2, dims=[0, 1], min_kept={"conv": 9})
    net = model(0)
    fr = frx.regularize(net, **settings)
    before, saved, short = list(frx.get_k(net).values()), None, 0
    for step in range(30):
        fr.step()
        now = list(frx.get_k(net).values())
        assert all(k <= k0 for k, k0 in zip(now, before)) and fr.kept() <= fr._rule()[1]
        short += fr.kept() < fr._rule()[1]  # positions of 9 or 25 weights rarely fill the total exactly
        before = now
        if step == 9:
            saved = copy.deepcopy(net.state_dict()), fr.state_dict(), frx.get_k(net)
    again = model(1)
    fr2 = frx.regularize(again, **settings)
    again.load_state_dict(saved[0])
    fr2.load_state_dict(saved[1])
    assert frx.get_k(again) == saved[2] and short > 10


def test_radius_budget_keeps_the_per_tensor_total_at_one_radius_in_every_tensor():
    """fr.budget=radius: the paper's total, every tensor cut at the same L1 norm (the last shell shared out)."""
    from frx.fr.mask import l1_counts

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(64, 128, 4), nn.ReLU(), nn.Conv2d(128, 8, 4), nn.ReLU(), nn.Conv2d(8, 4, 4))
    plain = copy.deepcopy(net)
    settings = dict(epsilon=0.02, gamma=0.5, min_kept={"conv": 16})
    fr, ref = frx.regularize(net, budget="radius", **settings), frx.regularize(plain, **settings)
    before = list(frx.get_k(net).values())
    for _ in range(12):
        fr.step(), ref.step()
        now = list(frx.get_k(net).values())
        assert fr.kept() == ref.kept() and all(k <= k0 for k, k0 in zip(now, before))
        before = now
    # each tensor's kept positions fill its L1 shells up to one radius r (the last one, r, may be part-filled)
    radii = []
    for _, _, p in frx.fr.fr_tensors(net):
        cum = torch.tensor(l1_counts(tuple(p.t_shape))).cumsum(0)
        radii.append((int((cum < p.k).sum()), int(p.k) in cum.tolist()))
    r = max(n for n, _ in radii)
    assert all(n == r or (n == r - 1 and full) for n, full in radii), radii
    ks, per_tensor = frx.get_k(net), frx.get_k(plain)
    # the smallest tensor gains coefficients, the largest gives them up
    assert ks["4.weight"] > per_tensor["4.weight"] and ks["0.weight"] < per_tensor["0.weight"]


def test_the_radius_budget_runs_from_the_config():
    from frx.config import compose, validate

    assert validate(compose(["experiment=table4/gan_fr1", "fr.budget=radius"])).fr.budget == "radius"
