"""The range coder's tables (corrdiff/modules/priors.py, docs/bitstream.md section 5): the scale grid
indexes a scale by its nearest table entry, and rebuilding the tables of a model file (what ``corrdiff
export`` does) gives the stored ones bit for bit, so a model exported again codes the same files."""

from __future__ import annotations

from pathlib import Path

import torch

from corrdiff.model_io import load_model
from corrdiff.modules.priors import ScaleGrid

GOLDEN_MODEL = Path(__file__).parent / "golden" / "model.pt"
TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def test_scale_index_is_the_nearest_table_entry_in_log_scale():
    grid = ScaleGrid(0.11, 32.0, 48)
    log_table = torch.tensor(grid.table(), dtype=torch.float64).log()
    every = torch.arange(grid.levels, dtype=torch.int32)
    assert torch.equal(grid.index(log_table.exp()), every)
    assert torch.equal(grid.index((log_table + 0.4 * grid.log_step).exp()), every)
    assert torch.equal(grid.index((log_table - 0.4 * grid.log_step).exp()), every)
    assert torch.equal(grid.index((log_table[:-1] + 0.6 * grid.log_step).exp()), every[1:])
    assert torch.equal(grid.index(torch.tensor([1e-6, 1e6])), torch.tensor([0, grid.levels - 1], dtype=torch.int32))


def test_rebuilding_the_tables_of_a_model_file_reproduces_them():
    for model in (GOLDEN_MODEL, "default"):
        codec = load_model(model)
        stored = {k: v.clone() for k, v in codec.state_dict().items() if k.rsplit(".", 1)[-1] in TABLES}
        assert len(stored) == 7  # the bottleneck's three, the Gaussian's three and its scale table
        codec.update(force=True)
        rebuilt = codec.state_dict()
        for key, table in stored.items():
            assert torch.equal(rebuilt[key], table), f"{model}: {key} differs when rebuilt"
