"""Model files: a config and weights, saved with torch.save and loaded with ``weights_only=True``.

A model file is a dict ``{"format": "corrdiff-model", "format_version": 1, "config": <JSON
string>, "state_dict": {...}, "metadata": {...}, "fingerprint": <hex>}``: plain tensors and strings
only, so loading never runs pickled code (a file carrying a pickled object is refused).
``load_model("default")`` loads the model shipped in the package.

Model files come from strangers too (shared checkpoints, downloaded ladders), so :func:`load_model`
validates them before use (:func:`check_model`, docs/reliability.md): every weight finite, the entropy
coder's tables consistent with compressai's coder (:func:`check_entropy_tables`), and the stored
fingerprint, when the file has one (files written before it existed have none), equal to the
recomputed one. :func:`save_model` runs the same checks before it writes.

One module per job, every name below importable from here:

* :mod:`~corrdiff.model_io.loading`: :func:`load_model`, packaged models by name;
* :mod:`~corrdiff.model_io.retired`: earlier versions of packaged models, by fingerprint, and where they are;
* :mod:`~corrdiff.model_io.saving`: :func:`save_model`;
* :mod:`~corrdiff.model_io.checks`: the validator (:func:`check_model` and its parts);
* :mod:`~corrdiff.model_io.state`: weights into a codec (:func:`load_codec_state`, key prefixes);
* :mod:`~corrdiff.model_io.checkpoints`: training checkpoints to codecs and model files
  (:func:`codec_from_training_state`, :func:`export_checkpoint`);
* :mod:`~corrdiff.model_io.file_format`, :mod:`~corrdiff.model_io.devices`,
  :mod:`~corrdiff.model_io.messages`: the format marks and what a wrong file looks like, the device
  check, error-message pieces.
"""

from __future__ import annotations

from corrdiff.model_io.checkpoints import (PHASE_KEY, codec_from_training_state, export_checkpoint, read_checkpoint,
                                           untrained_components)
from corrdiff.model_io.checks import (check_entropy_tables, check_finite, check_model, check_stored_fingerprint,
                                      not_finite)
from corrdiff.model_io.devices import check_device
from corrdiff.model_io.file_format import FORMAT, FORMAT_VERSION, ZIP_MAGIC, describe_file
from corrdiff.model_io.loading import PACKAGED, load_model, model_path, packaged_model_path
from corrdiff.model_io.retired import RETIRED, RetiredModel, retired_model
from corrdiff.model_io.saving import save_model
from corrdiff.model_io.state import load_codec_state, strip_prefixes, under_prefix

__all__ = [
    "FORMAT", "FORMAT_VERSION", "PACKAGED", "PHASE_KEY", "RETIRED", "RetiredModel", "ZIP_MAGIC", "check_device",
    "check_entropy_tables", "check_finite", "check_model", "check_stored_fingerprint", "codec_from_training_state",
    "describe_file", "export_checkpoint", "load_codec_state", "load_model", "model_path", "not_finite",
    "packaged_model_path", "read_checkpoint", "retired_model", "save_model", "strip_prefixes", "under_prefix",
    "untrained_components",
]
