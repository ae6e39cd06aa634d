"""The VAE's conditional prior (Sohn et al. 2015): KL term and prior network shapes."""

import pytest
import torch

from generators.vae import PriorNet, gaussian_kl


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    lv_q, lv_p = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu_q, (0.5 * lv_q).exp()),
                                            torch.distributions.Normal(mu_p, (0.5 * lv_p).exp()))
    torch.testing.assert_close(gaussian_kl(mu_q, lv_q, mu_p, lv_p), ref)
    # against the standard normal it is the usual VAE term
    zero = torch.zeros_like(mu_q)
    torch.testing.assert_close(gaussian_kl(mu_q, lv_q, zero, zero), 0.5 * (mu_q ** 2 + lv_q.exp() - 1 - lv_q))


@pytest.mark.parametrize("down", [2, 4, 16])
def test_prior_reaches_the_latent_grid(down):
    net = PriorNet(cond_ch=9, z_ch=3, down=down, width=8)
    mu, logvar = net(torch.rand(2, 9, 64, 64))
    assert mu.shape == logvar.shape == (2, 3, 64 // down, 64 // down)
