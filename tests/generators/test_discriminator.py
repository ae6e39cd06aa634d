"""The shared patch discriminator and its losses against closed forms."""

import pytest
import torch

from generators.discriminator import PatchDiscriminator, feature_matching, hinge_d_loss


def test_hinge_loss_closed_form():
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - x): 0, 0.5, 2
    fake = torch.tensor([-3.0, 0.0])  # relu(1 + x): 0, 1
    assert hinge_d_loss(real, fake).item() == pytest.approx((0 + 0.5 + 2) / 3 + (0 + 1) / 2)


def test_feature_matching_is_the_mean_over_layers_of_the_l1_distance():
    a = [torch.zeros(2, 3), torch.ones(4)]
    b = [torch.full((2, 3), 0.5), torch.full((4,), 3.0)]
    assert feature_matching(a, b).item() == pytest.approx((0.5 + 2.0) / 2)


def test_patch_discriminator_gives_one_logit_per_patch_and_its_features():
    d = PatchDiscriminator(1, [8, 16, 32])
    logits, feats = d(torch.rand(2, 1, 64, 64))
    assert [f.shape[1] for f in feats] == [8, 16, 32]
    assert logits.shape[:2] == (2, 1) and logits.shape[-1] > 1  # a map of patch logits, not one scalar
