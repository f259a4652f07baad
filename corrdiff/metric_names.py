"""The names of the evaluation metrics, in one place (plain data: no torch, cheap to import).

Names follow CompressAI's ``eval_model`` keys (``psnr-rgb``, ``ms-ssim-rgb``), so that its plotting
tools read our JSON files. :mod:`corrdiff.metrics` computes them; ``corrdiff eval``'s table and
``--metrics`` help, and ``corrdiff plot``'s panel order, are derived from these tuples.
"""

from __future__ import annotations

#: weight-free full-reference metrics, per image
WEIGHT_FREE = ("psnr-rgb", "ms-ssim-rgb", "hf-ratio", "colour-error", "haarpsi", "gmsd")
#: full-reference metrics with pretrained networks, per image
PRETRAINED = ("lpips-alex", "lpips-vgg", "dists")
#: distribution metrics over 256x256 patches of the whole data set (one value per method)
DATASET_METRICS = ("fid", "kid")
ALL_METRICS = WEIGHT_FREE + PRETRAINED + DATASET_METRICS
#: smaller is better for these (plots and BD-rate tables say so)
LOWER_IS_BETTER = frozenset({"lpips-alex", "lpips-vgg", "dists", "gmsd", "colour-error", "fid", "kid", "encoding_time",
                             "decoding_time"})
#: not a quality scale (1 is ideal, both directions are worse): left out of default BD-rate tables
NOT_MONOTONE = frozenset({"hf-ratio"})
#: the order of plot panels: fidelity, then perception, then the rest
PLOT_ORDER = ("psnr-rgb", "ms-ssim-rgb", "lpips-alex", "lpips-vgg", "dists", "fid", "kid", "haarpsi", "gmsd", "hf-ratio",
              "colour-error")
assert set(PLOT_ORDER) == set(ALL_METRICS)
