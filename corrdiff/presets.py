"""Named model configurations (keyword arguments of :class:`~corrdiff.codec.CorrDiffCodec`).

* ``tiny``: seconds on a CPU; for tests and smoke runs.
* ``small``: the size of the model shipped in the package (CPU-trainable).
* ``paper``: widths in the range of the CorrDiff / CDC papers, for GPU training.
* ``small_checkerboard``: ``small`` with the checkerboard context prior (corrdiff/modules/context_prior.py).
* ``small_channel``: ``small`` with the channel-conditional prior, 4 slices of 24 channels
  (corrdiff/modules/channel_prior.py).
* ``avif_tiny``, ``avif_small``: the AVIF base codec (docs/avif_base.md) under a ``tiny``-sized and a
  ``small``-sized score network; ``avif_small``'s score network is the packaged default's, so it can start
  from those weights (``init_parts``). Their score networks see x0_e and predict the residual over it.

``small`` and ``paper`` predict x0 (an ablation: from a fresh score network, x0-prediction
sampled 21.9 dB diffusion-only where eps gave 7.6 dB with a colour cast and v 17.7 dB). Their score
networks do not take x0_e (``e2e_input: none``) because phase 1 trains them before the end-to-end
decoder exists; the residual x0_e input, the winner, is added by a score-network stage on the
trained codec (``experiments/default_model/score.yaml``, ``experiments/paper/phase3.yaml``).
"""

from __future__ import annotations

import copy
from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {
        "latent_channels": 32,
        "encoder": {"name": "gdn", "channels": 24},
        "decoder": {"name": "gdn", "channels": 24},
        "prior": {"name": "mean_scale_hyperprior", "hyper_channels": 24},
        "conditioner": {"name": "pyramid", "channels": [16, 16, 32], "width": 24},
        "score_net": {"name": "unet", "base_channels": 16, "channel_mult": [1, 2, 2], "num_res_blocks": 1},
        "schedule": {"name": "linear"},
        "sampler": {"name": "ddim", "eta": 0.0},
        "steps": 8,
    },
    "small": {
        "latent_channels": 96,
        "encoder": {"name": "gdn", "channels": 64},
        "decoder": {"name": "gdn", "channels": 64},
        "prior": {"name": "mean_scale_hyperprior", "hyper_channels": 64},
        "conditioner": {"name": "pyramid", "channels": [32, 64, 64, 96], "width": 64},
        "score_net": {
            "name": "unet", "base_channels": 32, "channel_mult": [1, 2, 2, 3], "num_res_blocks": 1,
            "patch_size": 2, "prediction": "x0",
        },
        "schedule": {"name": "cosine"},
        "sampler": {"name": "ddim", "eta": 0.0},
        "steps": 8,
    },
    "paper": {
        "latent_channels": 320,
        "encoder": {"name": "residual", "channels": 192},
        "decoder": {"name": "residual", "channels": 192},
        "prior": {"name": "mean_scale_hyperprior", "hyper_channels": 192},
        "conditioner": {"name": "pyramid", "channels": [64, 128, 256, 256, 512], "width": 256},
        "score_net": {
            "name": "unet", "base_channels": 64, "channel_mult": [1, 2, 4, 4, 8], "num_res_blocks": 2,
            "attention_levels": [4], "prediction": "x0",
        },
        "schedule": {"name": "linear"},
        "sampler": {"name": "ddim", "eta": 0.0},
        "steps": 8,
    },
}

# ``small`` with the checkerboard context prior (corrdiff/modules/context_prior.py) in place of the mean-scale
# hyperprior: the same hyper widths, for a rate comparison of the two priors trained alike.
PRESETS["small_checkerboard"] = {
    **copy.deepcopy(PRESETS["small"]),
    "prior": {"name": "checkerboard_hyperprior", "hyper_channels": PRESETS["small"]["prior"]["hyper_channels"]},
}

# ``small`` with the channel-conditional prior (corrdiff/modules/channel_prior.py): the same hyper widths, four
# slices of its 96 latent channels.
PRESETS["small_channel"] = {
    **copy.deepcopy(PRESETS["small"]),
    "prior": {"name": "channel_hyperprior", "hyper_channels": PRESETS["small"]["prior"]["hyper_channels"], "slices": 4},
}

_AVIF_SCORE_NET = {**PRESETS["small"]["score_net"], "e2e_input": "residual"}
PRESETS["avif_tiny"] = {
    "base": {"name": "avif"},
    "conditioner": {"name": "image_pyramid", "channels": [16, 16, 32], "width": 16},
    "score_net": {**PRESETS["tiny"]["score_net"], "prediction": "x0", "e2e_input": "residual"},
    "schedule": {"name": "cosine"},
    "sampler": {"name": "ddim", "eta": 0.0},
    "steps": 4,
}
PRESETS["avif_small"] = {
    "base": {"name": "avif"},
    "conditioner": {"name": "image_pyramid", "channels": [32, 64, 64, 96], "width": 32},
    "score_net": _AVIF_SCORE_NET,
    "schedule": {"name": "cosine"},
    "sampler": {"name": "ddim", "eta": 0.0},
    "steps": 4,
}


def preset(name: str) -> dict[str, Any]:
    """A deep copy of a named configuration; unknown names list the known ones."""
    try:
        return copy.deepcopy(PRESETS[name])
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None
