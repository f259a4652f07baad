"""The replay record (corrdiff/replay.py): what a file fixes about its decode is derived once per side."""

from __future__ import annotations

import pytest
import torch

from corrdiff import bitstream
from corrdiff.errors import BitstreamError
from corrdiff.registry import SAMPLERS
from corrdiff.replay import Replay

from conftest import random_image


@pytest.fixture
def counts(monkeypatch):
    """How often a file is parsed and a sampler built."""
    seen = {"unpack": 0, "sampler": 0}
    unpack, build = bitstream.unpack, SAMPLERS.build

    def counting_unpack(*args, **kwargs):
        seen["unpack"] += 1
        return unpack(*args, **kwargs)

    def counting_build(*args, **kwargs):
        seen["sampler"] += 1
        return build(*args, **kwargs)

    monkeypatch.setattr(bitstream, "unpack", counting_unpack)
    monkeypatch.setattr(SAMPLERS, "build", counting_build)
    return seen


@pytest.mark.parametrize("spec", [None, {"name": "ddim", "eta": 0.1}, {"name": "ddpm"}])
def test_an_encode_builds_its_sampler_once_and_a_decode_parses_once_and_builds_once(tiny_codec, counts, spec):
    image = random_image(24, 40, seed=1)
    result = tiny_codec.encode(image, steps=2, sampler=spec)
    assert counts == {"unpack": 0, "sampler": 1}
    decoded = tiny_codec.decompress(result.data)
    assert counts == {"unpack": 1, "sampler": 2}
    assert torch.equal(decoded, result.reconstruction)


def test_a_size_target_builds_the_sampler_once_too(counts):
    from conftest import make_codec

    codec = make_codec(0, rate={"lambdas": [2.0, 1.0, 0.5]})
    counts["sampler"] = 0
    result = codec.encode(random_image(32, 48, seed=2), steps=1, max_bytes=400)
    assert counts["sampler"] == 1 and len(result.data) <= 400


def test_a_parsed_header_decodes_without_a_second_parse(tiny_codec, counts):
    data = tiny_codec.compress(random_image(17, 33), steps=1)
    header = bitstream.unpack(data)
    tiny_codec.decompress(header)
    assert counts["unpack"] == 1


def test_the_record_of_a_file_is_the_record_it_was_encoded_with(tiny_codec):
    replay = Replay.for_encoding(tiny_codec, 17, 33, "corrected", 3, {"name": "ddim", "eta": 0.25}, seed=9)
    result = tiny_codec.encode(random_image(17, 33), steps=3, sampler={"name": "ddim", "eta": 0.25}, seed=9)
    parsed = Replay.from_file(tiny_codec, bitstream.unpack(result.data))
    for field in ("mode", "height", "width", "steps", "seed", "rate", "gray"):
        assert getattr(parsed, field) == getattr(replay, field)
    assert (parsed.sampler.name, parsed.sampler.params) == (replay.sampler.name, replay.sampler.params)
    as_diffusion = Replay.from_file(tiny_codec, bitstream.unpack(result.data), "diffusion")
    assert not as_diffusion.mode.corrects and as_diffusion.sampler is not None
    e2e = tiny_codec.compress(random_image(17, 33), mode="e2e")
    with pytest.raises(BitstreamError, match="carries no gammas"):
        Replay.from_file(tiny_codec, bitstream.unpack(e2e), "corrected")
    assert Replay.from_file(tiny_codec, bitstream.unpack(e2e)).sampler is None
