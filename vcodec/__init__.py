"""vcodec: a learned video codec with an ffmpeg-style command line.

`vcodec.encode`, `vcodec.decode`, `vcodec.probe` and `vcodec.open` (frames of a stream by position) are imported
on first use, so that `import vcodec.train` works on a machine with only torch and numpy (no PyAV, no constriction).
"""

__version__ = "0.1.0"
__all__ = ["encode", "decode", "probe", "open", "__version__"]


def __getattr__(name):
    if name in ("encode", "decode", "probe"):
        from vcodec import api

        return getattr(api, name)
    if name == "open":
        from vcodec import reader

        return reader.open
    raise AttributeError(f"module 'vcodec' has no attribute {name!r}")
