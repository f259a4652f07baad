"""``corrdiff eval``: real-bitstream evaluation of CorrDiff models and classical baselines.

For every image of a folder (docs/evaluation.md has the protocol)::

    image --encode(mode)--> bytes --decompress--> 8-bit reconstruction --metrics--> one CSV row
                                    bpp = 8 * len(bytes) / (H * W), header included

* One file per mode (default): ``corrected``, ``diffusion`` and ``e2e`` are each encoded
  with their own ``mode``, so each mode's bpp is the size of the file that mode needs
  (``diffusion`` and ``e2e`` carry no gammas: 16 bits a step less than ``corrected``).
  With ``same_file=True`` the image is encoded once (``corrected``) and decoded in every
  mode from that file (``decompress(data, mode=...)``): the ablation at identical rate.
* Baselines (Pillow): JPEG, WebP, and AVIF where Pillow writes it, at fixed qualities,
  and "bpp-matched": per image, the highest quality whose file is no larger than the
  CorrDiff file of the same image (one matched point per model, i.e. per rate point, matching
  its ``corrected`` file when that mode is evaluated, else the first mode's).
* Outputs in ``out``: ``per_image.csv`` (one row per method, RD point and image), one JSON
  per method in CompressAI's ``eval_model`` schema ``{"name", "description", "results":
  {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...], ...}}`` (one list entry per RD
  point: mean over images; one point per model or quality), so that
  ``python -m compressai.utils.plot -f OURS.json -m psnr-rgb`` reads them; plus
  ``index.json`` listing the method files.
* A failed image is reported, skipped for every method (so all methods are scored on the
  same images) and counted in each JSON (``num_failed``, ``failed``).
* Metrics whose pretrained weights are missing are skipped, named in one line on stderr, and
  listed in ``unavailable`` with the reason (see :class:`corrdiff.metrics.MetricSuite`).

One job per module: :mod:`~corrdiff.evaluation.plan` (options, images),
:mod:`~corrdiff.evaluation.inference` (models, coding one image with every method),
:mod:`~corrdiff.evaluation.aggregate` (means, FID/KID, the JSON summaries),
:mod:`~corrdiff.evaluation.write` (CSV, JSON, the table) and :mod:`~corrdiff.evaluation.run`
(:func:`run_eval`, the steps in order).
"""

from corrdiff.evaluation.plan import CORRDIFF_MODES, DEFAULT_QUALITIES, list_images
from corrdiff.evaluation.run import EvaluationError, run_eval
from corrdiff.evaluation.write import format_table

__all__ = ["run_eval", "list_images", "format_table", "EvaluationError", "CORRDIFF_MODES", "DEFAULT_QUALITIES"]
