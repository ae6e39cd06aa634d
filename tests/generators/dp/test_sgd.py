"""Per-unit clipping, noise and the guards of DP-SGD (generators.dp.sgd)."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from audit.core.errors import UserError
from generators.dp.accountant import Ledger
from generators.dp.plan import DPPlan
from generators.dp.sgd import DPGuaranteeError, PoissonUnits, PrivateTraining, require_poisson, validate_module


def _plan(unit="slice", sigma=0.0, q=0.5, m=1, mode="hooks", releases=1, C=1.0):
    return DPPlan(unit=unit, n_units=8, slices_per_unit=m, delta=1e-3, max_grad_norm=C, accountant="rdp", mode=mode,
                  noise_multiplier=sigma, target_epsilon=None,
                  phases=[{"name": "train", "sample_rate": q, "steps": 10, "releases": releases}])


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.GroupNorm(1, 3), nn.SiLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 1))


def _x(n=6):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 1, 6, 6, generator=g)
    x[2] *= 300.0  # the outlier: its gradient is far above the clipping norm
    return x, torch.randn(n, 1, generator=g)


def _manual_update(net, x, y, owner, C, expected_units):
    """Per-row gradients by autograd one row at a time, averaged per unit, clipped, summed."""
    params = [p for p in net.parameters()]
    per_row = []
    for i in range(len(x)):
        net.zero_grad()
        ((net(x[i:i + 1]) - y[i:i + 1]) ** 2).mean().backward()
        per_row.append(torch.cat([p.grad.flatten() for p in params]).clone())
    per_row = torch.stack(per_row)
    units = [per_row[owner == u].mean(0) for u in range(int(owner.max()) + 1)]
    clipped = [g * min(1.0, C / (float(g.norm()) + 1e-6)) for g in units]
    return torch.stack(clipped).sum(0) / expected_units


def _dp_update(mode, unit_rows, x, y, owner):
    net = _net()
    before = torch.cat([p.detach().flatten() for p in net.parameters()]).clone()
    m = 1 if unit_rows == 1 else unit_rows
    private = PrivateTraining(_plan(unit="slice" if m == 1 else "subject", m=m, mode=mode), Ledger(1e-3), "train",
                              np.repeat(np.arange(8), 1), seed=0)
    opt = private.wrap({"net": net}, {"net": torch.optim.SGD(net.parameters(), lr=1.0)}, "test")["net"]
    opt.owner, opt.n_units_in_batch = torch.as_tensor(owner), int(owner.max()) + 1
    loss = ((net(x) - y) ** 2).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    private.close()
    after = torch.cat([p.detach().flatten() for p in net.parameters()])
    return (before - after), private.expected_units


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_outlier_is_clipped_per_sample_exactly(mode):
    x, y = _x()
    owner = np.arange(6)
    got, expected_units = _dp_update(mode, 1, x, y, owner)
    want = _manual_update(_net(), x, y, torch.as_tensor(owner), 1.0, expected_units)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    # the outlier's raw gradient is huge, its clipped contribution is at most C / expected units
    assert float(want.norm()) <= 6 * 1.0 / expected_units + 1e-5


def test_chosen_mode_equals_default_mode():
    x, y = _x()
    owner = np.arange(6)
    a, _ = _dp_update("hooks", 1, x, y, owner)
    b, _ = _dp_update("functorch", 1, x, y, owner)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_subject_level_averages_rows_before_clipping():
    x, y = _x()
    owner = np.array([0, 0, 1, 1, 2, 2])  # the outlier shares unit 1 with row 3
    got, expected_units = _dp_update("hooks", 2, x, y, owner)
    want = _manual_update(_net(), x, y, torch.as_tensor(owner), 1.0, expected_units)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_noise_has_the_planned_scale():
    net = nn.Linear(4, 1, bias=False)
    nn.init.zeros_(net.weight)
    private = PrivateTraining(_plan(sigma=2.0, q=0.5, C=0.5), Ledger(1e-3), "train", np.arange(8), seed=0)
    opt = private.wrap({"n": net}, {"n": torch.optim.SGD(net.parameters(), lr=1.0)}, "t")["n"]
    draws = []
    torch.manual_seed(0)
    for _ in range(400):
        before = net.weight.detach().clone()
        private.noise_only_step()  # empty Poisson batch: pure noise, std sigma C / expected units
        draws.append((before - net.weight.detach()).flatten())
    std = float(torch.cat(draws).std())
    assert std == pytest.approx(2.0 * 0.5 / private.expected_units, rel=0.08)


def test_poisson_units_are_seeded_and_poisson():
    units = np.repeat(np.arange(20), 3)
    pu = PoissonUnits(units, 0.25, 2, seed=5)
    rows, owner = pu.batch(7)
    rows2, owner2 = PoissonUnits(units, 0.25, 2, seed=5).batch(7)
    np.testing.assert_array_equal(rows, rows2)
    assert len(rows) == 2 * (owner.max() + 1)
    assert all(len(set(units[rows[owner == k]])) == 1 for k in range(owner.max() + 1))  # rows of one unit
    sizes = [int(pu.batch(s)[1].max(initial=-1)) + 1 for s in range(400)]
    assert np.mean(sizes) == pytest.approx(5.0, rel=0.1)  # E = q N
    assert np.var(sizes) == pytest.approx(20 * 0.25 * 0.75, rel=0.3)  # binomial, not a fixed batch size


def test_non_poisson_loader_is_refused():
    from opacus.data_loader import DPDataLoader
    from torch.utils.data import DataLoader, TensorDataset

    ds = TensorDataset(torch.zeros(10, 2))
    with pytest.raises(DPGuaranteeError, match="Poisson"):
        require_poisson(DataLoader(ds, batch_size=4, shuffle=True))
    require_poisson(DPDataLoader.from_data_loader(DataLoader(ds, batch_size=4)))


def test_model_changed_after_make_private_is_an_error():
    net = _net()
    private = PrivateTraining(_plan(), Ledger(1e-3), "train", np.arange(8), seed=0)
    opt = private.wrap({"n": net}, {"n": torch.optim.SGD(net.parameters(), lr=0.1)}, "net")["n"]
    net[4] = nn.Linear(3 * 6 * 6, 1)  # swapped after wrapping
    x, y = _x()
    opt.owner, opt.n_units_in_batch = torch.arange(6), 6
    ((net(x) - y) ** 2).mean().backward()
    with pytest.raises(DPGuaranteeError, match="changed after the network was made private"):
        opt.step()


def test_batchnorm_is_refused_before_training():
    with pytest.raises(UserError, match="cannot be trained with DP-SGD.*BatchNorm"):
        validate_module(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), "generator 'plugin'")


def test_empty_poisson_batches_release_noise_each_time():
    net = nn.Linear(3, 1)
    private = PrivateTraining(_plan(sigma=1.0), Ledger(1e-3), "train", np.arange(8), seed=0)
    private.wrap({"n": net}, {"n": torch.optim.SGD(net.parameters(), lr=0.1)}, "t")
    w0 = net.weight.detach().clone()
    for _ in range(3):  # consecutive empty batches must not trip Opacus' "gradients not cleared" check
        private.noise_only_step()
        private.spend()
    assert not torch.equal(w0, net.weight.detach())
    assert private.ledger.steps("train") == 3


def test_spectral_norm_layer_is_refused_with_a_clear_message():
    from torch.nn.utils import spectral_norm

    net = nn.Sequential(spectral_norm(nn.Conv2d(1, 2, 3)))
    private = PrivateTraining(_plan(), Ledger(1e-3), "train", np.arange(8), seed=0)
    with pytest.raises(UserError, match="cannot be trained with DP-SGD.*buffers"):
        private.wrap({"d": net}, {"d": torch.optim.SGD(net.parameters(), lr=0.1)}, "generator 'plugin'")
