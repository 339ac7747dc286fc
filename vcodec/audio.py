"""Audio pass-through: a source's audio packets kept as they are coded (docs/FORMAT.md, audio section), and put back
into an output container, copied, or re-encoded only where that container cannot hold the codec.

Timestamps are kept in each stream's own time base, shifted so that 0 is the moment the stream's first video frame is
shown (frame i is shown at i / fps); that is what keeps audio and video in sync through encode, decode and seeking.

A muxer needs a stream's codec parameters (AAC's AudioSpecificConfig, Opus's header, ...) to copy its packets. PyAV
builds an output stream only from an input stream, so the parameters are kept as a small Matroska file of that one
track, written and read by FFmpeg itself: every codec FFmpeg can copy keeps every parameter it needs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

import av

from vcodec import container as C
from vcodec.container import AudioPacket, AudioStream, DamagedAudio

PARAMETERS_FORMAT = "matroska"
# The codec a container gets when it cannot hold the source's (and the rate it is coded at, None: the source's).
_REENCODE = {".mp4": ("aac", None), ".mov": ("aac", None), ".m4v": ("aac", None), ".webm": ("libopus", 48000),
             ".mkv": ("flac", None), ".avi": ("libmp3lame", None)}
# Containers without a timestamp before 0, whose muxer would otherwise shift every stream by a copied track's priming
# (an AAC encoder's first packet starts before 0) rounded up to a whole tick of each: for AVI's video, a whole frame
# late. There a copied track starts at 0 instead (its priming played, as AVI has no edit list to hide it).
_NO_NEGATIVE = {".avi"}


# ------------------------------------------------------------------------------------------------------ encoding
def _parameters(template: av.audio.stream.AudioStream, first: av.Packet | None) -> bytes:
    """The Matroska file of `template`'s track alone, holding its first packet when there is one (FFmpeg opens such
    a file only with a packet in it; the packet itself is not used)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=PARAMETERS_FORMAT) as out:
        stream = out.add_stream_from_template(template)
        if first is None:
            out.start_encoding()
        else:
            packet = av.Packet(bytes(first))
            packet.pts = packet.dts = 0
            packet.duration = first.duration
            packet.time_base = first.time_base
            packet.stream = stream
            out.mux(packet)
    return buf.getvalue()


class AudioKeeper:
    """The audio streams of an opened source, as the encoder keeps them: their descriptions, and each demuxed packet
    as an AudioPacket on the stream's clock (0 = when the first coded frame is shown)."""

    def __init__(self, streams: list, notes: Callable[[str], None]):
        self.sources = []
        self.streams: list[AudioStream] = []
        for k, s in enumerate(streams):
            ctx = s.codec_context
            if len(self.streams) == C.MAX_AUDIO_STREAMS:
                notes(f"audio stream {k} ({ctx.name}) is not kept: a stream holds at most {C.MAX_AUDIO_STREAMS}")
                continue
            try:
                parameters = _parameters(s, None)  # can the track be described at all?
                description = AudioStream(ctx.name, ctx.sample_rate, ctx.channels, Fraction(s.time_base),
                                          parameters)
                description.pack()
            except (av.error.FFmpegError, ValueError, TypeError, ZeroDivisionError) as e:
                notes(f"audio stream {k} ({ctx.name}) is not kept: {e}")
                continue
            self.sources.append(s)
            self.streams.append(description)
        self.notes = notes
        self.by_source = {s.index: n for n, s in enumerate(self.sources)}
        self.described = [False] * len(self.streams)
        self.origin = Fraction(0)  # seconds on the source's clock that become 0: when the first coded frame shows
        self.trim_start = False  # drop packets that end before it (frames before it were skipped)
        self.end: Fraction | None = None  # drop packets that start at or after this (on the new clock)

    def convert(self, packet: av.Packet) -> AudioPacket | None:
        """The packet on the stream's new clock, or None when it falls outside the frames being coded."""
        n = self.by_source.get(packet.stream.index)
        if n is None or not packet.size or packet.dts is None:
            return None
        tb = Fraction(packet.time_base)
        shift = round(self.origin / tb)
        pts = (packet.pts if packet.pts is not None else packet.dts) - shift
        dts, duration = packet.dts - shift, max(0, packet.duration or 0)
        if (self.trim_start and (pts + duration) * tb <= 0) or (self.end is not None and pts * tb >= self.end):
            return None
        if not (C.time_in_range(pts, tb) and C.time_in_range(dts, tb)):
            self.notes(f"audio stream {n}: a packet at {float(pts * tb):.0f} s is further from the first frame than a "
                       f"stream's timestamps reach ({C.MAX_SECONDS} s); left out")
            return None
        if packet.size > C.MAX_AUDIO_PAYLOAD:
            self.notes(f"audio stream {n}: a packet of {packet.size} bytes (at {float(pts * tb):.3f} s) is larger than "
                       f"a stream holds ({C.MAX_AUDIO_PAYLOAD}); left out")
            return None
        if not self.described[n]:
            self.streams[n].parameters = _parameters(self.sources[n], packet)
            self.described[n] = True
        return AudioPacket(n, pts, dts, duration, packet.is_keyframe, bytes(packet))


# ------------------------------------------------------------------------------------------------------ decoding
def _template(stream: AudioStream, k: int):
    """An input stream carrying `stream`'s codec parameters (what PyAV copies an output stream from)."""
    try:
        source = av.open(io.BytesIO(stream.parameters), format=PARAMETERS_FORMAT)
    except (av.error.FFmpegError, ValueError, OSError) as e:
        raise DamagedAudio(f"audio stream {k}: damaged codec parameters ({e})") from None
    found = source.streams.audio[0].codec_context if len(source.streams.audio) == 1 else None
    if found is None or (found.name, found.sample_rate, found.channels) != (stream.codec, stream.sample_rate,
                                                                           stream.channels):
        source.close()
        raise DamagedAudio(f"audio stream {k}: its codec parameters disagree with its description")
    return source, source.streams.audio[0]


def _holds(format_name: str, template) -> bool:
    """Whether a container of this format takes the track: it may say so only when its header is written, which
    must not happen to the real output before the video is in it, so a header is written to memory first."""
    try:
        with av.open(io.BytesIO(), "w", format=format_name) as probe:
            probe.add_stream_from_template(template)
            probe.start_encoding()
        return True
    except (av.error.FFmpegError, ValueError, TypeError, OverflowError):
        return False


@dataclass
class _Track:
    """One audio stream of the output: copied, or (`decoder` set) decoded and coded again."""

    number: int
    time_base: Fraction
    out: object  # the output stream
    source: object = None  # the parameters' input container, whose stream decodes a re-encoded track
    decoder: object = None
    resampler: object = None
    samples: int = 0  # samples coded so far: the re-encoded track's clock
    shift: int | None = None  # a copied track in a container without negative timestamps: ticks added to each


class AudioWriter:
    """Adds a stream's audio to an output container (before its first packet is muxed) and muxes packets into it.
    `notes` hears what the user should know: a stream re-encoded. Streams that cannot be written leave `damage`."""

    def __init__(self, output, suffix: str, streams: list[AudioStream], notes: Callable[[str], None]):
        self.output = output
        self.starts_at_zero = suffix in _NO_NEGATIVE
        self.tracks: dict[int, _Track] = {}
        self.damage: DamagedAudio | None = None
        for k, s in enumerate(streams):
            if not s.packets:
                continue
            try:
                self.tracks[k] = self._track(k, s, suffix, notes)
            except DamagedAudio as e:
                self.damage = self.damage or e

    def _track(self, k: int, s: AudioStream, suffix: str, notes: Callable[[str], None]) -> _Track:
        source, template = _template(s, k)
        try:
            if not _holds(self.output.format.name, template):
                raise ValueError(f"{suffix} cannot hold it")
            out = self.output.add_stream_from_template(template)
            out.time_base = s.time_base
            source.close()
            return _Track(k, s.time_base, out)
        except ValueError:  # this container cannot hold the codec: decode it, and code it as the container can
            pass
        except (av.error.FFmpegError, TypeError, OverflowError) as e:
            source.close()
            raise DamagedAudio(f"audio stream {k}: cannot be written ({e})") from None
        try:
            codec, rate = _REENCODE[suffix]
            out = self.output.add_stream(codec, rate=rate or s.sample_rate)
            ctx = out.codec_context
            ctx.layout = "stereo" if s.channels >= 2 else "mono"
            resampler = av.AudioResampler(format=ctx.codec.audio_formats[0].name, layout=ctx.layout.name,
                                          rate=ctx.sample_rate)
        except (av.error.FFmpegError, ValueError, TypeError, KeyError, IndexError, OverflowError) as e:
            source.close()
            raise DamagedAudio(f"audio stream {k}: cannot be written ({e})") from None
        notes(f"audio stream {k}: {suffix} cannot hold {s.codec}, so it is re-encoded as {codec}")
        return _Track(k, s.time_base, out, source, template.codec_context, resampler)

    def write(self, packet: AudioPacket) -> None:
        """Mux one packet (timestamps already on the output's clock); DamagedAudio when it cannot be written."""
        track = self.tracks.get(packet.stream)
        if track is None:
            return
        try:
            p = av.Packet(packet.data)
            p.pts, p.dts, p.duration = packet.pts, packet.dts, packet.duration
            p.time_base = track.time_base
            if track.decoder is None:
                if self.starts_at_zero:
                    if track.shift is None:  # its first packet: the earliest (dts never goes back)
                        track.shift = max(0, -min(packet.pts, packet.dts))
                    p.pts, p.dts = packet.pts + track.shift, packet.dts + track.shift
                p.is_keyframe = packet.keyframe
                p.stream = track.out
                self.output.mux(p)
                return
            for frame in track.decoder.decode(p):
                self._encode(track, frame)
        except (av.error.FFmpegError, ValueError, OverflowError) as e:
            raise DamagedAudio(f"audio stream {packet.stream}, packet at {float(packet.pts * track.time_base):.3f} s: "
                               f"cannot be written ({e})") from None

    def _encode(self, track: _Track, frame) -> None:
        if frame.time is not None and frame.time + frame.samples / frame.sample_rate <= 0:
            return  # the encoder's priming before the first frame is shown (an edit list hides it when copied)
        for resampled in track.resampler.resample(frame):
            self._code(track, resampled)

    def _code(self, track: _Track, frame) -> None:
        if frame is not None:
            frame.pts = track.samples  # the re-encoded track's clock counts its samples from the output's start
            frame.time_base = Fraction(1, track.out.codec_context.sample_rate)
            track.samples += frame.samples
        for p in track.out.encode(frame):
            self.output.mux(p)

    def close(self) -> None:
        """Finish the re-encoded tracks; DamagedAudio if one cannot be finished."""
        problem = None
        for track in self.tracks.values():
            if track.decoder is None:
                continue
            try:
                for frame in track.decoder.decode(None):
                    self._encode(track, frame)
                for resampled in track.resampler.resample(None):
                    self._code(track, resampled)
                self._code(track, None)
            except (av.error.FFmpegError, ValueError) as e:
                problem = problem or DamagedAudio(f"audio stream {track.number}: cannot finish it ({e})")
            finally:
                track.source.close()
        if problem is not None:
            raise problem


class AudioFeed:
    """The audio a decode writes beside its frames: the stream's packets of the span asked for, on the output's
    clock, handed to a sink up to a given time, so that the muxer gets audio and video interleaved. The first damage
    stops the audio, never the video, and is kept in `damage`.

    The span is [start, end) seconds on the stream's clock: packets that end before a start > 0, or start at or after
    the end, are left out, and the others are shifted to a clock that starts at `start`. `end` (None: the stream's
    end) may be settled late, up to the call that writes the rest (`write_until(sink, None)`): a decode that meets
    damage learns where its span ends only from the frames it could write."""

    def __init__(self, reader: C.StreamReader, start: Fraction, end: Fraction | None):
        self.damage: DamagedAudio | None = None
        self.streams: list[AudioStream] = []
        self.start, self.end = start, end
        self._packets: Iterator[tuple[AudioPacket, Fraction]] | None = None
        self._pending: tuple[AudioPacket, Fraction] | None = None
        try:
            self.streams = reader.audio_streams()
        except DamagedAudio as e:
            self.damage = e
        if self.streams:
            self._packets = self._span(reader.audio_packets())

    def _span(self, packets: Iterator[AudioPacket]) -> Iterator[tuple[AudioPacket, Fraction]]:
        """(the packet on the output's clock, when it starts on the stream's) for the packets that do not end
        before the span's start."""
        for p in packets:
            tb = self.streams[p.stream].time_base
            if self.start > 0 and (p.pts + p.duration) * tb <= self.start:
                continue
            shift = round(self.start / tb)
            yield AudioPacket(p.stream, p.pts - shift, p.dts - shift, p.duration, p.keyframe, p.data), p.pts * tb

    def _stop(self, damage: DamagedAudio) -> None:
        self.damage = self.damage or damage
        self._packets = self._pending = None

    def write_until(self, sink, until: Fraction | None) -> None:
        """Write the packets that start before `until` seconds on the output's clock (None: all that are left, up to
        the span's end) into `sink`."""
        while self._packets is not None:
            if self._pending is None:
                try:
                    self._pending = next(self._packets)
                except StopIteration:
                    self._packets = None
                    return
                except DamagedAudio as e:
                    self._stop(e)
                    return
            packet, starts = self._pending
            if until is not None and packet.pts * self.streams[packet.stream].time_base >= until:
                return
            self._pending = None
            if self.end is not None and starts >= self.end:
                continue  # after the span (another stream's packets may still be in it)
            try:
                sink.write_audio(packet)
            except DamagedAudio as e:
                self._stop(e)
                return
