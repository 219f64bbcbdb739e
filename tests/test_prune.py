import pytest
import torch
from torch import nn

import frx
from frx.fr import final_kept
from frx.prune import MagnitudePruner, budget_from_fr


class Net(nn.Module):
    """A small LeNet-5-like model (conv, conv, linear, linear)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3)
        self.conv2 = nn.Conv2d(6, 8, 3)
        self.fc1 = nn.Linear(8 * 4 * 4, 40)
        self.fc2 = nn.Linear(40, 10)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def effective(module, name="weight"):
    if hasattr(module, f"{name}_mask"):
        return getattr(module, f"{name}_orig") * getattr(module, f"{name}_mask")
    return getattr(module, name)


def test_budget_from_fr_matches_final_mask_rule():
    net = Net()
    budget = budget_from_fr(net, 0.05, {"conv": 20, "linear": 30})
    assert budget == {
        "conv1.weight": final_kept(54, 0.05, 20),        # floor: 20
        "conv2.weight": final_kept(432, 0.05, 20),       # round(21.6) = 22
        "fc1.weight": final_kept(5120, 0.05, 30),        # 256
        "fc2.weight": final_kept(400, 0.05, 30),         # floor: 30
    }
    assert budget == {"conv1.weight": 20, "conv2.weight": 22, "fc1.weight": 256, "fc2.weight": 30}
    assert budget_from_fr(net, 0.05, 20, exclude=["fc2"]).keys() == {"conv1.weight", "conv2.weight", "fc1.weight"}
    assert budget_from_fr(net, 0.05, 20, include=["Conv2d"]).keys() == {"conv1.weight", "conv2.weight"}
    assert budget_from_fr(net, 1.0, 0)["fc1.weight"] == 5120  # never above numel


def test_budget_equals_fr_final_mask():
    net = Net()
    budget = budget_from_fr(net, 0.05, {"conv": 20, "linear": 30}, exclude=["conv1"])
    handle = frx.regularize(net, epsilon=0.05, gamma=1.0, min_kept={"conv": 20, "linear": 30}, exclude=["conv1"])
    net.train()
    handle.step()  # gamma = 1: at the floor after one step
    summary = frx.summary(net).set_index("name")
    assert budget == {name: int(summary.loc[name, "kept"]) for name in budget}
    assert sum(budget.values()) == handle.kept()


@pytest.mark.parametrize("schedule", ["cubic", "geometric"])
def test_exact_counts_and_monotone_schedule(schedule):
    torch.manual_seed(0)
    net = Net()
    budget = {"conv1.weight": 7, "conv2.weight": 50, "fc1.weight": 100, "fc2.weight": 33}
    pruner = MagnitudePruner(net, budget, steps=4, schedule=schedule)
    prev = {name: int(effective(getattr(net, name.split(".")[0])).numel()) for name in budget}
    for t in range(1, 5):
        kept = pruner.step()
        for name in budget:
            assert kept[name] == pruner.remaining_at(name, t)
            assert budget[name] <= kept[name] <= prev[name]
        prev = kept
    assert pruner.kept() == budget and pruner.done
    assert pruner.step() == budget  # further steps change nothing
    # the survivors are the largest-magnitude weights of the dense tensor
    torch.manual_seed(0)
    dense = Net()
    w, mask = dense.fc2.weight.detach().abs().flatten(), net.fc2.weight_mask.flatten().bool()
    assert w[mask].min() >= w[~mask].max()


def test_prunes_a_channels_last_model_by_magnitude():
    # a channels_last conv kernel is not contiguous: torch's pruning ranks through .view(-1)
    torch.manual_seed(0)
    net = Net().to(memory_format=torch.channels_last)
    assert not net.conv2.weight.is_contiguous()
    dense = net.conv2.weight.detach().clone()
    budget = {"conv1.weight": 20, "conv2.weight": 30}
    pruner = MagnitudePruner(net, budget, steps=2, schedule="cubic")
    pruner.step()
    assert pruner.step() == budget
    w, mask = dense.abs().flatten(), net.conv2.weight_mask.flatten().bool()
    assert int(mask.sum()) == 30 and w[mask].min() >= w[~mask].max()


def test_pruned_weights_stay_zero_while_training_and_finalize_is_plain():
    torch.manual_seed(0)
    net = Net()
    keys = set(net.state_dict())
    budget = budget_from_fr(net, 0.02, {"conv": 10, "linear": 20})
    pruner = MagnitudePruner(net, budget, steps=3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    masks = {}
    for epoch in range(5):
        for _ in range(3):
            x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
            loss = nn.functional.cross_entropy(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            for name in masks:
                mod = getattr(net, name.split(".")[0])
                assert torch.equal(mod.weight_mask, masks[name])
                assert torch.count_nonzero(mod.weight[masks[name] == 0]) == 0  # forward-time weight
                assert torch.count_nonzero(effective(mod)[masks[name] == 0]) == 0  # after the step
        if epoch < pruner.steps:
            pruner.step()
            masks = {n: getattr(net, n.split(".")[0]).weight_mask.clone() for n in budget}
    assert pruner.kept() == budget
    final = pruner.finalize()
    assert final == budget
    assert set(net.state_dict()) == keys
    for name, k in budget.items():
        mod = getattr(net, name.split(".")[0])
        assert isinstance(mod.weight, nn.Parameter)
        assert not hasattr(mod, "weight_mask") and not mod._forward_pre_hooks
        assert int(torch.count_nonzero(mod.weight)) == k
    fresh = Net()
    fresh.load_state_dict(net.state_dict())  # a plain model of the same class loads it
    with pytest.raises(RuntimeError):
        pruner.step()


def test_resume_from_checkpoint():
    torch.manual_seed(1)
    net = Net()
    budget = {"conv2.weight": 40, "fc1.weight": 300}
    pruner = MagnitudePruner(net, budget, steps=4)
    pruner.step()
    pruner.step()
    model_state, pruner_state = net.state_dict(), pruner.state_dict()
    net2 = Net()
    pruner2 = MagnitudePruner(net2, budget, steps=4)
    pruner2.load_state_dict(pruner_state)
    net2.load_state_dict(model_state)
    assert pruner2.t == 2 and pruner2.kept() == pruner.kept()
    pruner2.step(), pruner.step()
    assert pruner2.kept() == pruner.kept()
    assert torch.equal(net2.fc1.weight_mask, net.fc1.weight_mask)
    assert pruner2.finalize() == budget


def test_rejects_bad_budgets():
    net = Net()
    with pytest.raises(ValueError):
        MagnitudePruner(net, {"fc2.weight": 0}, steps=2)
    with pytest.raises(ValueError):
        MagnitudePruner(net, {"fc2.weight": 401}, steps=2)
    with pytest.raises(AttributeError):
        MagnitudePruner(net, {"fc9.weight": 3}, steps=2)
    with pytest.raises(ValueError):
        MagnitudePruner(net, {"fc2.weight": 3}, steps=0)
