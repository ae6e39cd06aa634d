"""Closed-form checks of the diffusion objective and sampler (no training needed).

With an *oracle* denoiser -- one that knows the single data point ``x0`` and therefore returns
the exact target for any ``x_t`` -- deterministic DDIM keeps the implied noise ``eps`` constant
from step to step and lands exactly on ``x0`` (Song et al. 2021, eq. 12). The noise stays
constant only if the sampler's state really is at the noise level of the timestep the network
is told, i.e. the timestep grid and the step size agree (trailing spacing, first step at T-1).
"""

import numpy as np
import pytest
import torch

from audit.core.errors import UserError
from generators.diffusion import T_TRAIN, ZERO_SNR, DDPMGenerator, LDMGenerator


def _generator(prediction: str, schedule: str = "scaled_linear_beta") -> DDPMGenerator:
    g = DDPMGenerator()
    g._set_options({"prediction": prediction, "channels": [8, 8], "norm_groups": 4, "schedule": schedule})
    g.scheduler = g._train_scheduler()
    return g


class _Oracle(torch.nn.Module):
    """Returns the exact epsilon / v target for ``x_t`` given the one true ``x0``."""

    def __init__(self, x0: torch.Tensor, scheduler, prediction: str):
        super().__init__()
        self.x0, self.a, self.prediction = x0, scheduler.alphas_cumprod, prediction
        self.seen: list[int] = []
        self.eps: list[torch.Tensor] = []

    def forward(self, x, t, mask_oh, cls):
        t0 = int(t[0])
        self.seen.append(t0)
        a = self.a[t0]
        eps = (x - a.sqrt() * self.x0) / (1 - a).sqrt()
        self.eps.append(eps)
        return eps if self.prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * self.x0


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon"])
@pytest.mark.parametrize("steps", [4, 8, 10, 20])
def test_ddim_with_an_oracle_recovers_the_data_point(prediction, steps):
    g = _generator(prediction)
    x0 = torch.linspace(-0.9, 0.9, 2 * 16).reshape(2, 1, 4, 4)
    oracle = _Oracle(x0, g.scheduler, prediction)
    g.nets = {"unet": oracle}
    g.vocab = type("V", (), {"null_vendor": 0, "null_group": 0})()
    x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    out = g._denoise(x, torch.zeros(2, 4, 4, 4), torch.zeros(2, dtype=torch.long), steps, 1.0)
    assert oracle.seen[0] == T_TRAIN - 1  # starts from pure noise at the last training step
    assert len(oracle.seen) == steps
    for eps in oracle.eps[1:]:  # each step moves exactly to the level of the next timestep
        torch.testing.assert_close(eps, oracle.eps[0], atol=1e-4, rtol=0)
    np.testing.assert_allclose(out.numpy(), x0.numpy(), atol=1e-4)


def test_zero_snr_schedule_is_the_scaled_linear_one_shifted_to_pure_noise():
    """Lin et al. 2024, Algorithm 1, checked against MONAI's own scaled-linear schedule."""
    plain = _generator("v_prediction").scheduler.alphas_cumprod.double()
    zero = _generator("v_prediction", ZERO_SNR).scheduler.alphas_cumprod.double()
    first, last = plain[0].sqrt(), plain[-1].sqrt()
    assert last > 0.02  # the plain schedule never reaches pure noise (sqrt(alpha_bar_T) ~ 0.03)
    torch.testing.assert_close(zero.sqrt(), (plain.sqrt() - last) * first / (first - last), atol=1e-6, rtol=0)
    assert float(zero[-1]) == 0.0 and torch.all(zero[1:] <= zero[:-1])
    sampler = _generator("v_prediction", ZERO_SNR)
    from generators.diffusion import ddim_scheduler

    torch.testing.assert_close(ddim_scheduler(ZERO_SNR, "v_prediction", 10).alphas_cumprod, sampler.scheduler.alphas_cumprod)


@pytest.mark.parametrize("steps", [4, 10])
def test_ddim_with_an_oracle_recovers_the_data_point_at_zero_terminal_snr(steps):
    g = _generator("v_prediction", ZERO_SNR)
    x0 = torch.linspace(-0.9, 0.9, 2 * 16).reshape(2, 1, 4, 4)
    g.nets = {"unet": _Oracle(x0, g.scheduler, "v_prediction")}
    g.vocab = type("V", (), {"null_vendor": 0, "null_group": 0})()
    x = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    out = g._denoise(x, torch.zeros(2, 4, 4, 4), torch.zeros(2, dtype=torch.long), steps, 1.0)
    np.testing.assert_allclose(out.numpy(), x0.numpy(), atol=1e-4)


def test_zero_snr_needs_v_prediction():
    with pytest.raises(UserError, match="needs prediction v_prediction"):
        DDPMGenerator.check_options({"schedule": ZERO_SNR, "prediction": "epsilon"})
    LDMGenerator.check_options({"schedule": ZERO_SNR})  # ldm predicts v by default


def test_v_target_is_the_velocity_of_salimans_and_ho():
    g = _generator("v_prediction")
    x0 = torch.rand(3, 1, 4, 4)
    noise = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 500, 999])
    xt, v = g._noised(x0, noise, t)
    a = g.scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(v, a.sqrt() * noise - (1 - a).sqrt() * x0)
    # x0 is recovered from (x_t, v) in closed form
    torch.testing.assert_close(a.sqrt() * xt - (1 - a).sqrt() * v, x0, atol=1e-5, rtol=0)
    _, eps = _generator("epsilon")._noised(x0, noise, t)
    torch.testing.assert_close(eps, noise)


def test_unknown_prediction_is_refused():
    g = DDPMGenerator()
    g._set_options({"prediction": "x0"})
    g.vocab = type("V", (), {"null_vendor": 1, "null_group": 1})()
    with pytest.raises(UserError, match="prediction must be one of"):
        g.build(train=False)


def test_checkpoints_without_the_option_load_as_epsilon():
    g = LDMGenerator()
    g._from_model_config({"options": {"channels": [8, 8], "norm_groups": 8}, "vocab": {"vendors": ["A"], "groups": ["NOR"]},
                          "shape": [32, 32], "spacing": [1.5, 1.5]})
    assert g.options["prediction"] == "epsilon"
    assert LDMGenerator.defaults["prediction"] == "v_prediction"


def test_cached_latents_train_exactly_like_per_batch_encoding(rings):
    """``training_inputs`` encodes the training set once; a step on the cached latents equals a
    step that encodes the batch itself (the autoencoder is frozen and encodes to its mean)."""
    from audit.pipeline.config import resolve_config

    cfg = resolve_config(preset="smoke", generator="ldm", generator_preset=LDMGenerator.presets["smoke"],
                         overrides={"train.steps": 1, "train.batch_size": 8})
    g = LDMGenerator()
    g.fit(rings, cfg)
    images = torch.from_numpy(rings.images[:8]).unsqueeze(1)
    cached = g.training_inputs(images)
    torch.testing.assert_close(cached, g.to_data(images))
    assert DDPMGenerator().training_inputs(images) is None  # pixel space: nothing to cache
    batch = {"image": images, "mask": torch.from_numpy(rings.masks[:8]), "labelled": torch.ones(8, dtype=torch.bool),
             "vendor": torch.zeros(8, dtype=torch.long), "group": torch.zeros(8, dtype=torch.long)}
    losses = []
    for extra in ({}, {"data": cached}):
        g.build(train=True)
        torch.manual_seed(0)
        losses.append(g.train_step({**batch, **extra}, 0, np.random.default_rng(0))["loss"])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon", "velocity"])
def test_noise_estimate_inverts_every_objective(prediction):
    """PIA's building block: from the network's target at x_t back to the noise that made x_t."""
    from generators.diffusion import FlowGenerator

    if prediction == "velocity":
        g = FlowGenerator()
        g._set_options({})
    else:
        g = _generator(prediction)
    g.scheduler = g._train_scheduler()
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 1, 8, 8, generator=gen), torch.randn(3, 1, 8, 8, generator=gen)
    dtype = torch.float32 if prediction == "velocity" else torch.long
    t = torch.tensor([0, 250, 900], dtype=dtype)
    xt, target = g._noised(x0, noise, t)
    torch.testing.assert_close(g._noise_estimate(target, xt, t), noise, rtol=1e-4, atol=1e-4)


class _GaussianFlowOracle(torch.nn.Module):
    """The exact rectified-flow velocity ``E[x0 - n | x_t]`` for data ``x0 ~ N(0, s^2 I)``.

    With ``x_t = (1 - tau) x0 + tau n``: ``v(x, tau) = ((1 - tau) s^2 - tau) x / sigma^2(tau)``,
    ``sigma^2(tau) = (1 - tau)^2 s^2 + tau^2``; the probability-flow ODE ``dx/dtau = -v`` scales
    ``x`` by ``sigma(tau)``, so it maps noise ``x(1)`` exactly to ``s x(1)`` at ``tau = 0``."""

    def __init__(self, s: float):
        super().__init__()
        self.s, self.calls = s, 0

    def forward(self, x, t, mask_oh, cls):
        self.calls += 1
        tau = t.float().view(-1, 1, 1, 1) / T_TRAIN
        return ((1 - tau) * self.s**2 - tau) / ((1 - tau) ** 2 * self.s**2 + tau**2) * x


def _flow_sampler_error(sampler: str | None, steps: int) -> tuple[float, int]:
    from generators.diffusion import FlowGenerator

    g = FlowGenerator()
    g._set_options({})
    oracle = _GaussianFlowOracle(s=0.3)
    g.nets = {"unet": oracle}
    g.vocab = type("V", (), {"null_vendor": 0, "null_group": 0})()
    g.sampling = {"sampler": sampler}
    x1 = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = g._denoise(x1, torch.zeros(2, 4, 4, 4), torch.zeros(2, dtype=torch.long), steps, 1.0)
    return float((out - 0.3 * x1).abs().max() / (0.3 * x1).abs().max()), oracle.calls


@pytest.mark.parametrize("sampler", ["heun", "midpoint"])
def test_second_order_flow_solvers_converge_faster_than_euler(sampler):
    """Against the closed-form Gaussian flow: Euler's error halves with twice the steps (first
    order), Heun's and the midpoint rule's at least quarter (second order), at two network calls per step."""
    e8, calls = _flow_sampler_error("euler", 8)
    e16, _ = _flow_sampler_error("euler", 16)
    assert calls == 8
    assert 1.6 < e8 / e16 < 2.4
    s8, calls = _flow_sampler_error(sampler, 8)
    s16, _ = _flow_sampler_error(sampler, 16)
    assert calls == 16
    assert s8 / s16 > 3.0  # at least second order (the midpoint rule does better on this field)
    assert s8 < e16 / 3  # better than Euler at the same number of network calls


@pytest.mark.parametrize("sampler", [None, "auto"])
def test_flow_defaults_to_the_midpoint_rule(sampler):
    assert _flow_sampler_error(sampler, 8) == _flow_sampler_error("midpoint", 8)


@pytest.mark.parametrize("sampler", ["ddim", "rk45"])
def test_flow_refuses_samplers_it_does_not_have(sampler):
    with pytest.raises(UserError, match="samples with euler / heun / midpoint"):
        _flow_sampler_error(sampler, 4)


def test_ddim_families_refuse_a_flow_solver():
    g = _generator("v_prediction")
    g.nets = {"unet": _Oracle(torch.zeros(1, 1, 4, 4), g.scheduler, "v_prediction")}
    g.vocab = type("V", (), {"null_vendor": 0, "null_group": 0})()
    g.sampling = {"sampler": "heun"}
    with pytest.raises(UserError, match="samples with ddim"):
        g._denoise(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, 4), torch.zeros(1, dtype=torch.long), 4, 1.0)
