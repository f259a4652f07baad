"""The one corrected reverse step (corrdiff/reverse.py): inference, the diffusion loss and the adversarial term
all go through it, and the decode's pieces export with ``torch.export``."""

from __future__ import annotations

import pytest
import torch

from corrdiff import reverse, sampling
from corrdiff.losses import diffusion_loss

from conftest import make_codec, random_image


@pytest.fixture
def counted(monkeypatch):
    """Calls of reverse.clean_estimate, by caller."""
    calls: list[str] = []
    original = reverse.clean_estimate

    def spy(*args, **kwargs):
        import inspect

        calls.append(inspect.stack()[1].function)
        return original(*args, **kwargs)

    monkeypatch.setattr(reverse, "clean_estimate", spy)
    return calls


def test_sampling_the_diffusion_loss_and_the_adversarial_term_share_the_step(tiny_codec, counted):
    from corrdiff.training.adversarial import AdversarialTraining
    from corrdiff.training.terms import Intermediates

    tiny_codec.encode(random_image(16, 16), steps=3)
    assert counted.count("corrected_step") == 3
    x = random_image(16, 16) * 2 - 1
    y_hat, _ = tiny_codec.analyse(x)
    diffusion_loss(tiny_codec, x, tiny_codec.condition(y_hat))
    assert counted[-1] == "diffusion_loss"
    module = AdversarialTraining(preset="tiny", target="x0_d")
    y_hat, _ = module.codec.analyse(x)
    inter = Intermediates(x=x, y_hat=y_hat, x0_e=module.codec.decode_e2e(y_hat), cond=module.codec.condition(y_hat))
    module.judged_pair(inter)
    assert counted[-1] == "judged_pair"


def test_the_exported_pieces_compute_what_the_sampling_loop_computes():
    codec = make_codec(3)
    codec.score_net.out[-1].weight.data.normal_(0, 0.05)  # a non-zero output layer: the step does something
    image = random_image(32, 48, seed=2)
    with torch.no_grad():
        y_hat, _ = codec.analyse(codec.pad(image * 2 - 1))
        prelude = sampling.DecodePrelude(codec).eval()
        exported = torch.export.export(prelude, (y_hat,))
        eager = prelude(y_hat)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(exported.module()(y_hat), eager))
        x0_e, *cond = eager
        sampler = sampling.sampler_for_encoding({"name": "ddim"}, codec.schedule, 4).sampler
        t = sampler.timesteps[1]
        step = sampling.ReverseStepModule(codec, sampler, t, projected=True).eval()
        x_t = torch.randn_like(x0_e)
        gamma = torch.full((1, 1, 1, 1), 0.3)
        graph = torch.export.export(step, (x_t, x0_e, gamma, *cond))
        x0_c, x_prev = step(x_t, x0_e, gamma, *cond)
        exported_c, exported_prev = graph.module()(x_t, x0_e, gamma, *cond)
    assert torch.allclose(exported_c, x0_c, atol=1e-5) and torch.allclose(exported_prev, x_prev, atol=1e-5)
    manual = reverse.corrected_step(codec, sampler, x_t, t, cond, x0_e, lambda x0_d: gamma, None, True)
    assert torch.equal(manual[0], x0_c)
