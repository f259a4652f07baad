"""The context priors, checkerboard (corrdiff/modules/context_prior.py) and channel-conditional slices
(corrdiff/modules/channel_prior.py), docs/bitstream.md section 5: exact round trips on every latent size (1 x 1 and
odd ones), decoding independent of the thread count, each part's parameters reading only the parts decoded before
it, training-time likelihoods, bounded streams, garbage streams, the whole codec, and the model validator. The
tests of the shared coding loop run for both priors. Tiny shapes throughout (a 2-core CPU)."""

from __future__ import annotations

import copy
import dataclasses
import random

import pytest
import torch

import corrdiff
from corrdiff import bitstream
from corrdiff.decoding import check_stream_lengths
from corrdiff.errors import BitstreamError, ModelLoadError
from corrdiff.model_io import check_model
from corrdiff.modules import entropy_coding, priors
from corrdiff.modules.channel_prior import ChannelSliceHyperprior, slice_sizes
from corrdiff.modules.context_prior import (CheckerboardHyperprior, CheckerboardMaskedConv2d, anchor_count,
                                           anchor_mask)
from corrdiff.presets import preset
from corrdiff.registry import PRIORS

from conftest import random_image

LATENT = 32  # the tiny preset's
SPECS = {"checkerboard": {"name": "checkerboard_hyperprior", "hyper_channels": 24},
         "channel": {"name": "channel_hyperprior", "hyper_channels": 24, "slices": 4}}
#: per prior, latent elements (channel, row, column of a 3 x 3 latent) that land in each of its parts
PART_PROBES = {"checkerboard": [((2, 1, 1), "y_anchors"), ((2, 0, 1), "y_non_anchors")],
               "channel": [((2, 1, 1), "y_slice_0"), ((30, 0, 1), "y_slice_3")]}
SIZES = [(1, 1), (1, 2), (2, 1), (1, 5), (3, 5), (4, 4), (5, 3), (7, 6)]


def make_prior(seed: int = 0, kind: str = "checkerboard", latent: int = LATENT) -> priors.MeanScaleHyperprior:
    torch.manual_seed(seed)
    prior = PRIORS.build(SPECS[kind], latent_channels=latent)
    prior.update(force=True)
    return prior.eval()


def trained_looking_latent(hw: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A latent of the magnitudes a trained encoder gives (a few quantisation steps, some channels near zero)."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.rand(1, LATENT, 1, 1, generator=g) * 4
    return torch.randn(1, LATENT, *hw, generator=g) * spread + torch.randn(1, LATENT, 1, 1, generator=g)


@pytest.fixture(scope="module")
def checkerboard() -> CheckerboardHyperprior:
    return make_prior()


@pytest.fixture(scope="module", params=list(SPECS))
def kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def prior(kind) -> priors.MeanScaleHyperprior:
    return make_prior(kind=kind)


@pytest.fixture(scope="module")
def codec(kind):
    torch.manual_seed(3)
    codec = corrdiff.CorrDiffCodec(**{**preset("tiny"), "prior": SPECS[kind]})
    codec.update(force=True)
    return codec.eval()


# --------------------------------------------------------------------------- the prior alone
def test_registered_with_their_streams(checkerboard):
    assert PRIORS.get("checkerboard_hyperprior") is CheckerboardHyperprior
    assert checkerboard.streams == ("z", "y_anchors", "y_non_anchors")
    assert checkerboard.hyper_synthesis is checkerboard.h_s
    assert PRIORS.get("channel_hyperprior") is ChannelSliceHyperprior
    channel = make_prior(kind="channel")
    assert channel.streams == ("z", "y_slice_0", "y_slice_1", "y_slice_2", "y_slice_3")
    assert channel.slice_sizes == (8, 8, 8, 8) and channel.hyper_synthesis is channel.h_s
    widest = ChannelSliceHyperprior(64, hyper_channels=8, slices=bitstream.MAX_STREAMS - 1)
    assert len(widest.streams) == bitstream.MAX_STREAMS  # a file carries every stream such a prior codes


@pytest.mark.parametrize("hw", SIZES)
def test_round_trip_is_exact_on_every_latent_size(prior, hw):
    y = trained_looking_latent(hw, seed=hw[0] * 10 + hw[1])
    streams, y_hat = prior.compress(y)
    assert len(streams) == len(prior.streams)
    counts = prior.stream_symbols(hw)
    assert all(len(s) <= entropy_coding.max_stream_bytes(n) for s, n in zip(streams, counts))
    assert torch.equal(prior.decompress(streams, hw), y_hat)
    assert float((y_hat - y).abs().max()) <= 0.5 + 1e-4  # round(y - mean) + mean
    assert sum(counts[1:]) == LATENT * hw[0] * hw[1]
    if isinstance(prior, CheckerboardHyperprior) and hw != (1, 1):  # anchors at (i + j) even, every channel
        assert counts[1] == LATENT * -(-(hw[0] * hw[1]) // 2) and counts[2] == LATENT * (hw[0] * hw[1] // 2)
    if isinstance(prior, ChannelSliceHyperprior):
        assert counts[1:] == tuple(size * hw[0] * hw[1] for size in prior.slice_sizes)


def test_checkerboard_split_and_the_one_position_latent():
    for hw in SIZES + [(6, 9), (9, 9)]:
        mask = anchor_mask(LATENT, hw)
        assert int(mask.sum()) == anchor_count(LATENT, hw) and (~mask).any()
    mask = anchor_mask(LATENT, (3, 4))
    assert mask[:, 0, 0].all() and not mask[:, 0, 1].any() and mask[:, 1, 1].all() and torch.equal(mask[0], mask[-1])
    one = anchor_mask(LATENT, (1, 1))  # no non-anchor position: the channels are halved between the two streams
    assert one[:16].all() and not one[16:].any()
    # every stream of a 1 x 1 latent codes at least MIN_SYMBOLS symbols, for each preset's width (the loader's check)
    for name in ("tiny", "small_checkerboard"):
        channels = {"tiny": LATENT, "small_checkerboard": preset(name)["latent_channels"]}[name]
        counts = CheckerboardHyperprior(channels, hyper_channels=8).stream_symbols((1, 1))
        assert min(counts) >= priors.MIN_SYMBOLS, (name, counts)


def test_small_checkerboard_and_small_channel_are_small_with_the_prior_replaced():
    small, checker, channel = preset("small"), preset("small_checkerboard"), preset("small_channel")
    assert checker["prior"] == {"name": "checkerboard_hyperprior", "hyper_channels": small["prior"]["hyper_channels"]}
    assert channel["prior"] == {"name": "channel_hyperprior", "hyper_channels": small["prior"]["hyper_channels"],
                                "slices": 4}
    for other in (checker, channel):
        assert {k: v for k, v in other.items() if k != "prior"} == {k: v for k, v in small.items() if k != "prior"}
    built = PRIORS.build(channel["prior"], latent_channels=channel["latent_channels"])
    assert built.slice_sizes == (24, 24, 24, 24) and min(built.stream_symbols((1, 1))) >= priors.MIN_SYMBOLS


def test_slice_sizes():
    assert slice_sizes(32, 4) == (8, 8, 8, 8)
    assert slice_sizes(10, 3) == (4, 3, 3)  # as equal as they can be, the first ones wider
    assert slice_sizes(32, [8, 8, 16]) == (8, 8, 16)  # uneven slices, as given
    for bad in (0, 33, [8, 8], [0, 32], [40, -8]):
        with pytest.raises(ValueError, match="slice"):
            slice_sizes(32, bad)


def test_context_reads_the_anchors_only():
    torch.manual_seed(0)
    conv = CheckerboardMaskedConv2d(4, 6, 5)
    anchors = anchor_mask(4, (9, 8))
    x = torch.randn(1, 4, 9, 8)
    other = torch.where(anchors, x, torch.randn(1, 4, 9, 8) * 100)  # the non-anchors changed, anchors kept
    out, out_other = conv(x), conv(other)
    non_anchor = ~anchors[:1].expand(6, 9, 8)
    assert torch.equal(out[0][non_anchor], out_other[0][non_anchor])  # what a non-anchor sees is decoded already
    moved = x.clone()
    moved[0, :, 4, 4] += 1.0  # an anchor: its four neighbours (non-anchors) see it
    assert not torch.equal(conv(moved)[0, :, 4, 5], out[0, :, 4, 5])
    assert "mask" not in conv.state_dict()  # built by the code, never read from a model file


def test_anchors_change_the_non_anchors_parameters_only(checkerboard):
    prior = checkerboard
    hw = (4, 6)
    y = trained_looking_latent(hw, seed=5)
    streams, y_hat = prior.compress(y)
    hyper = prior._hyper(prior.entropy_bottleneck.decompress([streams[0]], (1, 2)), hw)
    anchors = anchor_mask(LATENT, hw)
    only_anchors = torch.where(anchors, y_hat, torch.zeros_like(y_hat))
    shifted = only_anchors.clone()
    shifted[0, :, 0, 0] += 3.0
    a = prior._part_params("y_non_anchors", hyper, only_anchors, ~anchors)
    b = prior._part_params("y_non_anchors", hyper, shifted, ~anchors)
    c = prior._part_params("y_non_anchors", hyper, torch.where(anchors, only_anchors, y_hat + 7), ~anchors)
    assert not (torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))  # the context is used
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])  # non-anchor values never are


def test_a_slice_reads_the_earlier_slices_only():
    prior = make_prior(kind="channel")
    hw = (4, 6)
    y = trained_looking_latent(hw, seed=5)
    streams, y_hat = prior.compress(y)
    hyper = prior._hyper(prior.entropy_bottleneck.decompress([streams[0]], (1, 2)), hw)
    parts = prior._parts(hw, torch.device("cpu"))
    for k, (part, mask) in enumerate(parts):
        earlier = torch.zeros_like(y_hat)
        earlier[:, : prior.slice_starts[k]] = y_hat[:, : prior.slice_starts[k]]
        a = prior._part_params(part, hyper, earlier, mask)
        later_changed = y_hat + 7  # its own values and the later slices' changed, the earlier ones kept
        later_changed[:, : prior.slice_starts[k]] = earlier[:, : prior.slice_starts[k]]
        b = prior._part_params(part, hyper, later_changed, mask)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]), part  # never its own or a later slice
        assert a[0].shape == (1, int(mask.sum())) == a[1].shape
        if k:
            shifted = earlier.clone()
            shifted[0, prior.slice_starts[k] - 1] += 3.0  # the slice just before: used
            c = prior._part_params(part, hyper, shifted, mask)
            assert not (torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])), part


@pytest.mark.parametrize("kind", list(SPECS))
def test_decode_is_identical_with_one_and_two_threads(num_threads, kind):
    prior = make_prior(seed=1, kind=kind)
    hw = (12, 17)
    y = trained_looking_latent(hw, seed=1)
    num_threads(1)
    streams, y_hat = prior.compress(y)
    one = prior.decompress(streams, hw)
    num_threads(2)
    two = prior.decompress(streams, hw)
    streams_two, y_hat_two = prior.compress(y)
    assert torch.get_num_threads() == 2
    assert torch.equal(one, y_hat) and torch.equal(two, y_hat)
    assert torch.equal(prior.decompress(streams_two, hw), y_hat_two)  # a 2-thread encode decodes as well


@pytest.mark.parametrize("kind", list(SPECS))
def test_training_forward_shapes_likelihoods_and_gradients(kind):
    prior = make_prior(seed=2, kind=kind).train()
    y = trained_looking_latent((6, 7), seed=2).repeat(2, 1, 1, 1).requires_grad_()
    y_hat, likelihoods = prior(y)
    assert y_hat.shape == y.shape and set(likelihoods) == {"z", "y"}
    assert likelihoods["y"].shape == y.shape and likelihoods["z"].shape == (2, 24, 2, 2)
    for value in likelihoods.values():
        assert torch.isfinite(value).all() and (value > 0).all() and (value <= 1).all()
    assert torch.isfinite(y_hat).all()
    rate = sum(-torch.log2(v).sum() for v in likelihoods.values())
    rate.backward()
    context = ([prior.context_prediction, prior.entropy_parameters] if kind == "checkerboard"
               else list(prior.slice_networks))
    for module in (*context, prior.h_s, prior.h_a):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), module
    assert y.grad is not None and torch.isfinite(y.grad).all()
    if kind == "checkerboard":
        assert prior.context_prediction.weight.grad[..., 2, 2].abs().sum() == 0  # the masked centre learns nothing


def test_training_and_coding_see_the_same_model(prior):
    """The float32 training forward and the float64 coding path snap to the same grid: the same y_hat almost
    everywhere (a flip needs a float discrepancy landing on a grid boundary)."""
    y = trained_looking_latent((8, 9), seed=7)
    with torch.no_grad():
        y_hat_training, _ = prior(y)
    _, y_hat_coded = prior.compress(y)
    assert float((y_hat_training == y_hat_coded).float().mean()) > 0.99


def test_uncodable_latents_and_narrow_models_are_refused(prior, kind):
    y = trained_looking_latent((3, 3))
    y[0, 1, 1, 1] = float("nan")
    with pytest.raises(corrdiff.EntropyCoderError, match="NaN or infinite"):
        prior.compress(y)
    blind = copy.deepcopy(prior)  # z independent of y: the symbol checks of each part of y are reached
    with torch.no_grad():
        blind.h_a[-1].weight.zero_()
    for (channel, row, column), part in PART_PROBES[kind]:
        y = trained_looking_latent((3, 3))
        y[0, channel, row, column] = 1e9
        with pytest.raises(corrdiff.EntropyCoderError, match=f"latent {part} reaches .* beyond the entropy coder"):
            blind.compress(y)
    assert min(CheckerboardHyperprior(7, hyper_channels=8).stream_symbols((1, 1))) < priors.MIN_SYMBOLS
    assert min(ChannelSliceHyperprior(15, hyper_channels=8, slices=4).stream_symbols((1, 1))) < priors.MIN_SYMBOLS
    with pytest.raises(ValueError, match="batch"):
        prior.compress(trained_looking_latent((2, 2)).repeat(2, 1, 1, 1))


# --------------------------------------------------------------------------- in the codec
@pytest.fixture(scope="module")
def encoded(codec):
    return {name: codec.encode(image, steps=2) for name, image in
            (("17x40", random_image(17, 40, seed=11)), ("9x13", random_image(9, 13, seed=12)))}


@pytest.mark.parametrize("name", ["17x40", "9x13"])  # 9 x 13: a 1 x 1 latent
def test_codec_round_trip(codec, encoded, name):
    result = encoded[name]
    header = bitstream.unpack(result.data)
    assert len(header.streams) == len(codec.stream_names) == len(codec.prior.streams) > 2
    decoded = codec.decompress(result.data)
    assert decoded.shape == result.reconstruction.shape
    assert torch.equal(decoded, result.reconstruction)
    assert torch.equal(codec.read(result.data)[1], result.y_hat)
    coders = [m.entropy_coder for m in codec.prior.modules() if hasattr(m, "entropy_coder")]
    assert coders and all(type(c).__name__ == "_BoundedRangeDecoder" for c in coders)


def _with_streams(data: bytes, streams: tuple[bytes, ...]) -> bytes:
    return bitstream.pack(dataclasses.replace(bitstream.unpack(data), streams=streams))


def test_oversized_streams_are_refused_before_any_padding(codec, encoded, monkeypatch):
    data = encoded["17x40"].data
    header = bitstream.unpack(data)
    latent_hw = codec.latent_hw(17, 40)
    limits = [entropy_coding.max_stream_bytes(n) for n in codec.prior.stream_symbols(latent_hw)]
    check_stream_lengths(codec.prior, header, latent_hw)  # the valid file passes
    monkeypatch.setattr(entropy_coding, "range_decoder_padding", lambda *a: pytest.fail("padded an oversized stream"))
    for k, name in enumerate(codec.prior.streams):
        streams = list(header.streams)
        streams[k] = streams[k] + bytes(limits[k] - len(streams[k]) + 1)
        forged = bitstream.unpack(_with_streams(data, tuple(streams)))
        with pytest.raises(BitstreamError, match=rf"stream {name} holds {limits[k] + 1} bytes, more than the "
                                                 rf"{limits[k]} bytes"):
            check_stream_lengths(codec.prior, forged, latent_hw)
        with pytest.raises(BitstreamError, match=f"stream {name} holds"):
            codec.read(_with_streams(data, tuple(streams)))
    monkeypatch.undo()
    at_bound = list(header.streams)
    at_bound[2] = at_bound[2] + bytes(limits[2] - len(at_bound[2]))
    try:  # at the bound: decoded (or refused for another reason)
        codec.read(_with_streams(data, tuple(at_bound)))
    except BitstreamError as exc:
        assert "more than" not in str(exc)


def test_garbage_streams_behind_a_valid_crc_decode_or_raise(codec, encoded):
    """Random earlier parts feed the context networks: whatever they decode to, the later parts decode or the file
    is refused (never a crash, an index outside the tables or a non-finite latent)."""
    data = encoded["17x40"].data
    rng = random.Random(0)
    outcomes = set()
    for _ in range(12):
        streams = tuple(rng.choice([rng.randbytes(rng.randrange(1, 80)), b"\xff" * rng.randrange(80), b""])
                        for _ in codec.prior.streams)
        try:
            _, y_hat = codec.read(_with_streams(data, streams))
        except BitstreamError:
            outcomes.add("refused")
        else:
            assert y_hat.shape == (1, LATENT, *codec.latent_hw(17, 40))
            outcomes.add("decoded")
    assert outcomes


def test_validator_accepts_it_after_save_and_load(codec, encoded, tmp_path):
    check_model(codec)
    path = tmp_path / "context.pt"
    corrdiff.save_model(codec, path)
    loaded = corrdiff.load_model(path)
    check_model(loaded)
    assert type(loaded.prior) is type(codec.prior)
    assert loaded.fingerprint() == codec.fingerprint()
    assert not any(k.endswith(".mask") for k in loaded.state_dict())
    result = encoded["17x40"]
    assert torch.equal(loaded.read(result.data)[1], result.y_hat)


@pytest.mark.parametrize("kind", list(SPECS))
def test_validator_refuses_a_latent_too_narrow_for_the_one_position_split(kind):
    """Checkerboard: 6 channels, 3 a stream at 1 x 1; channel: 4 slices of 12 channels, 3 each."""
    torch.manual_seed(0)
    narrow = corrdiff.CorrDiffCodec(**{**preset("tiny"), "latent_channels": {"checkerboard": 6, "channel": 12}[kind],
                                       "prior": {**SPECS[kind], "hyper_channels": 8}})
    narrow.update(force=True)
    with pytest.raises(ModelLoadError, match="too narrow"):
        check_model(narrow)
