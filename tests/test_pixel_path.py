"""The pixel path's precisions (networks/pixel_path.py): fp32 is the float model; the bf16 plans cost no visible
quality on natural video; a stream's symbols never depend on the precision that decodes it, and every precision
decodes any stream."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from vcodec import container as C
from vcodec.api import psnr_rgb
from vcodec.codec import VideoDecoder, VideoEncoder
from vcodec.intra_coder import to_pixels
from vcodec.networks import pixel_path
from vcodec.networks.pixel_path import PixelPath, _SplitConv, amx_bf16, native_bf16, resolve_precision

from conftest import sample_frames

CPU = torch.device("cpu")
needs_bf16 = pytest.mark.skipif(not native_bf16(CPU), reason="this CPU has no native bf16: `auto` is fp32 here")


@pytest.fixture(scope="module")
def stem():
    from vcodec import weights

    return weights.load_stem(weights.DEFAULT_STEM_MODEL, "cpu")


@pytest.fixture(scope="module")
def clip():
    return sample_frames(4, 320, 192, start=20)


def test_fp32_is_the_float_model(bundle, clip):
    model = bundle.model.eval()
    path = PixelPath(model, CPU, "fp32")
    x = torch.from_numpy(clip[0]).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        y = model.g_a(x)
        assert torch.allclose(path.g_a(x), y, atol=1e-4, rtol=1e-4)
        assert torch.allclose(path.g_s(y), model.g_s(y), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("plan", ["fp32"] + [pytest.param(p, marks=needs_bf16) for p in ("mixed", "auto")])
def test_fused_picture_gives_the_bytes_of_g_s_then_to_pixels(monkeypatch, bundle, plan):
    """g_s.picture (the decoder's: pixel shuffle, rounding, crop and layout in one copy) against the plain form,
    byte for byte, over latents that drive pixels out of [0, 1], odd crops, and a NaN (split products even on
    these small layers)."""
    monkeypatch.setattr(pixel_path, "SPLIT_MIN_MACS", 0)
    path = PixelPath(bundle.model.eval(), CPU, plan)
    g = torch.Generator().manual_seed(3)
    for h, w, scale in [(12, 20, 1.0), (5, 7, 8.0), (3, 4, 30.0)]:
        y = torch.randn(1, bundle.model.g_s[0].weight.shape[0], h, w, generator=g) * scale
        if scale > 20:
            y[0, :, 1, 1] = float("nan")
        for height, width in [(16 * h, 16 * w), (16 * h - 5, 16 * w - 11), (1, 1)]:
            want = to_pixels(path.g_s(y)[0, :, :height, :width])
            got = path.g_s.picture(y, height, width).numpy()
            assert got.dtype == np.uint8 and got.shape == (height, width, 3) and got.flags.c_contiguous
            assert np.array_equal(got, want)
            if scale > 1 and height > 1:
                assert (want == 0).any() and (want == 255).any()  # the clamps were exercised


@pytest.mark.skipif(not native_bf16(CPU) or os.environ.get("ONEDNN_MAX_CPU_ISA") is not None
                    or not torch.backends.mkldnn.is_available(),
                    reason="the split runs only on oneDNN's bf16 kernels (with AMX); fallbacks need not sum in float32")
@pytest.mark.parametrize("transposed", [True, False])
def test_split_bf16_products_round_only_the_output(monkeypatch, transposed):
    """_SplitConv (auto's g_s with AMX) is float32's sum rounded once to bf16: within half a bf16 ulp (2^-8) of the
    exact value, plus 2^-14 of the sum of |products|, wherever plain bf16 (inputs and weights rounded) is not; a
    layer below SPLIT_MIN_MACS is float32's."""
    monkeypatch.setattr(pixel_path, "SPLIT_MIN_MACS", 0)
    g = torch.Generator().manual_seed(5)
    layer = torch.nn.ConvTranspose2d(24, 16, 5, 2, 2, 1) if transposed else torch.nn.Conv2d(24, 16, 3, 1, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * 0.05)
        layer.bias.copy_(torch.randn(16, generator=g))
        x = torch.randn(1, 24, 9, 13, generator=g)
        x[0, :, :3] *= 1e-3  # small values beside large ones, as on dark parts of a picture
        run = F.conv_transpose2d if transposed else F.conv2d
        args = (layer.stride, layer.padding) + ((layer.output_padding,) if transposed else ())
        exact = run(x.double(), layer.weight.double(), layer.bias.double(), *args)
        magnitude = run(x.double().abs(), layer.weight.double().abs(), layer.bias.double().abs(), *args)
        bound = 2.0**-8 * exact.abs() + 2.0**-14 * magnitude
        split = _SplitConv(layer)(x.contiguous(memory_format=torch.channels_last)).double()
        plain = run(x.bfloat16(), layer.weight.bfloat16(), layer.bias.bfloat16(), *args).double()
    assert split.shape == exact.shape
    assert bool(((split - exact).abs() <= bound).all())
    assert not bool(((plain - exact).abs() <= bound).all())  # the bound tells the two apart
    assert not torch.equal(split, run(x, layer.weight, layer.bias, *args).double())  # it did take bf16 products
    monkeypatch.setattr(pixel_path, "SPLIT_MIN_MACS", 10**12)  # a small layer: float32 as it is
    with torch.no_grad():
        small = _SplitConv(layer)(x.contiguous(memory_format=torch.channels_last))
        assert torch.allclose(small, run(x, layer.weight, layer.bias, *args), rtol=1e-5, atol=1e-6)


def test_auto_splits_g_s_products_only_where_amx_runs_bf16(monkeypatch, bundle):
    path = PixelPath(bundle.model.eval(), CPU, "auto")
    splits = [s for s in path.g_s.steps if isinstance(s, _SplitConv)]
    assert len(splits) == (3 if amx_bf16(CPU) and native_bf16(CPU) else 0)  # the inner transposed convolutions
    assert not any(isinstance(s, _SplitConv) for s in path.g_a.steps)
    assert not any(isinstance(s, _SplitConv) for p in ("fp32", "mixed") if native_bf16(CPU) or p == "fp32"
                   for s in PixelPath(bundle.model.eval(), CPU, p).g_s.steps)
    has_amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")  # allowed up to AMX: as the hardware says
    assert amx_bf16(CPU) == has_amx
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # oneDNN held below AMX: no split, whatever the CPU
    assert not amx_bf16(CPU)
    assert not any(isinstance(s, _SplitConv) for s in PixelPath(bundle.model.eval(), CPU, "auto").g_s.steps)


def test_precision_names():
    assert resolve_precision("fp32", CPU) == "fp32"
    assert resolve_precision("auto", CPU) == ("auto" if native_bf16(CPU) else "fp32")
    with pytest.raises(ValueError):
        resolve_precision("fp16x", CPU)


@needs_bf16
@pytest.mark.parametrize("quality", [0, 4, 7])
@pytest.mark.parametrize("plan", ["auto", "mixed"])
def test_bf16_plans_cost_no_visible_quality_and_no_rate(bundle, stem, clip, quality, plan):
    """Encoded and decoded in `auto` (g_a in bf16) or `mixed` (g_s too), against fp32 both ways, on natural video:
    the PSNR within 0.05 dB and the size within 1 % (benchmarks/pixel_precision.py measures more pictures)."""
    h, w = clip[0].shape[:2]
    results = {}
    for precision in ("fp32", plan):
        enc = VideoEncoder(bundle, CPU, 4, stem, precision=precision)
        dec = VideoDecoder(bundle, CPU, stem, precision=precision)
        size, scores, words = 0, [], 0
        for rgb in clip:
            packet = enc.encode(rgb, quality)
            size += sum(len(s) for s in packet.substreams)
            words += len(packet.substreams)  # each substream ends on a whole 32-bit word
            scores.append(psnr_rgb(dec.decode(packet, w, h), rgb))
        results[precision] = size, float(np.mean(scores))
    (size32, psnr32), (size16, psnr16) = results["fp32"], results[plan]
    assert abs(psnr16 - psnr32) < 0.05, results
    assert abs(size16 - size32) <= 0.01 * size32 + 4 * words, results


def test_symbols_do_not_depend_on_the_decoders_precision(bundle, stem, clip):
    """A stream made in one precision parses to the same symbols, and the same latents, in every precision; the
    pictures differ by a hair at most."""
    h, w = clip[0].shape[:2]
    precisions = ["fp32"] + (["auto", "mixed"] if native_bf16(CPU) else [])
    for made_in in precisions:
        enc = VideoEncoder(bundle, CPU, 4, stem, precision=made_in, adaptive=False)
        packets = [enc.encode(rgb, 5) for rgb in clip]
        assert [p.frame_type for p in packets] == [C.FRAME_I, C.FRAME_P, C.FRAME_P, C.FRAME_P]
        decoded = {}
        for precision in precisions:
            parser, decoder = VideoDecoder(bundle, CPU, stem, precision), VideoDecoder(bundle, CPU, stem, precision)
            symbols = [parser.parse(p) for p in packets]
            decoded[precision] = [s.residual for s in symbols], [s.scale_index for s in symbols], [
                decoder.decode(p, w, h) for p in packets]
        ref_res, ref_idx, ref_rgb = decoded["fp32"]
        for res, idx, rgb in decoded.values():
            assert all(np.array_equal(a, b) for a, b in zip(res, ref_res))
            assert all(np.array_equal(a, b) for a, b in zip(idx, ref_idx))
            assert all(psnr_rgb(a, b) > 45 for a, b in zip(rgb, ref_rgb))
