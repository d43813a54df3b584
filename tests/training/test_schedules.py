import math

import pytest

from fmnist.training.schedules import lr_factor


def test_constant_is_one():
    f = lr_factor("constant", 100)
    assert [f(t) for t in (1, 50, 100)] == [1.0, 1.0, 1.0]


def test_cosine_decays_from_one_to_zero():
    f = lr_factor("cosine", 100)
    assert f(0) == pytest.approx(1.0)
    assert f(50) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    assert all(f(t) >= f(t + 1) for t in range(100))
    assert f(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_warmup_rises_linearly_then_decays():
    f = lr_factor("cosine", 110, warmup_steps=10)
    assert [f(t) for t in (1, 5, 10)] == pytest.approx([0.1, 0.5, 1.0])
    assert f(60) == pytest.approx(0.5)
    g = lr_factor("constant", 100, warmup_steps=4)
    assert [g(t) for t in (1, 2, 4, 5, 99)] == pytest.approx([0.25, 0.5, 1.0, 1.0, 1.0])


def test_unknown_schedule():
    with pytest.raises(ValueError, match="constant, cosine"):
        lr_factor("exponential", 10)


def test_onecycle_matches_pytorch_onecycle_lr(torch):
    total = 200
    ours = lr_factor("onecycle", total)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=total, cycle_momentum=False)
    reference = []
    for _ in range(total):
        reference.append(optimizer.param_groups[0]["lr"])  # the rate of step t = 1, 2, ...
        optimizer.step()
        scheduler.step()
    got = [ours(t) for t in range(1, total + 1)]
    assert got == pytest.approx(reference, rel=1e-9, abs=1e-12)
    assert max(got) == pytest.approx(1.0, abs=1e-3)
    assert got[0] == pytest.approx(1 / 25, rel=0.1)
    assert got[-1] < 1e-4
