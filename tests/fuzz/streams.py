"""The clean streams the fuzzers mutate: a constant-rate one without the optional header fields, and one with all of
them (its packets carry timestamps, its header display metadata, and an audio section follows the video)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

# The all-flags stream's source: 64x48 frames at these pts (tenths of a second, so not evenly spaced at any rate),
# turned 90 degrees, with 4:3 samples, beside an AAC tone as long as the video.
ALL_FLAGS_PTS = [0, 3]
ALL_FLAGS_TIME_BASE = Fraction(1, 10)


def constant_rate_stream(work: Path, frames: int = 2) -> Path:
    """`frames` 64x48 frames of the sample clip at 25 fps, from PNG files: no timestamps, display metadata or audio."""
    from conftest import sample_frames, write_pngs
    from vcodec import api

    folder = write_pngs(work / "frames", sample_frames(frames, 64, 48, start=10))
    out = work / "clean.hfc"
    api.encode(folder, out, quality=1, fps=25, overwrite=True)
    return out


def all_flags_stream(work: Path) -> Path:
    """An I- and a P-frame of the sample clip, encoded from a clip with a variable frame rate, a rotation, a sample
    aspect ratio and AAC audio: every header flag (audio, timestamps, display metadata) set."""
    import av

    from conftest import TONE_RATE, mux_tone, sample_frames
    from vcodec import api
    from vcodec import container as C

    work.mkdir(parents=True, exist_ok=True)
    clip = work / "all-flags.mp4"
    with av.open(str(clip), "w") as c:
        video = c.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        video.time_base = video.codec_context.time_base = ALL_FLAGS_TIME_BASE
        video.codec_context.sample_aspect_ratio = Fraction(4, 3)
        video.set_display_rotation(90)
        sound = c.add_stream("aac", rate=TONE_RATE)
        sound.layout = "stereo"
        for pts, rgb in zip(ALL_FLAGS_PTS, sample_frames(len(ALL_FLAGS_PTS), 64, 48, start=10)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = pts, ALL_FLAGS_TIME_BASE
            for packet in video.encode(frame):
                c.mux(packet)
        mux_tone(c, sound, round((ALL_FLAGS_PTS[-1] + 1) * ALL_FLAGS_TIME_BASE * TONE_RATE))
        for packet in video.encode():
            c.mux(packet)
    out = work / "all-flags.hfc"
    api.encode(clip, out, quality=1, fixed_gop=True, overwrite=True)  # an I- and a P-frame, whatever they cost
    with C.StreamReader(out) as r:
        assert r.header.timed and r.header.display is not None and r.header.has_audio, "not every flag is set"
    return out
