"""Video clips: the packed clip layout, synthetic clips, readers and the lazy clip dataset.

A clip is one float tensor ``(T + k, C, S, S)`` (:class:`ClipLayout`: ``T`` frames plus
side planes for the voice's log-mel spectrogram and the landmark tracks), so every part of
cfer that moves tensors (Avalanche streams and replay buffers, distillation, few-shot
episodes, DDP) moves clips too. :class:`ClipDataset` decodes clips lazily through a
bounded cache; :func:`make_clip_splits` gives synthetic clips in subject-disjoint splits,
:func:`read_clip_manifest` and :func:`read_dfew` read video files or frame folders.
PyAV is imported only when a video is read or written.

Example:
    >>> from cfer.data.video import ClipLayout
    >>> ClipLayout(frames=8, image_size=64).planes
    9
"""

from cfer.cliplayout import ClipLayout, ClipParts, ClipSource, RawClip
from cfer.data.video.audio import log_mel
from cfer.data.video.cache import DEFAULT_CACHE_BYTES, CacheInfo
from cfer.data.video.dataset import ClipDataset
from cfer.data.video.decode import VIDEO_EXTENSIONS, ClipError, ClipNotFoundError, read_video
from cfer.data.video.dfew import DFEW_LABELS, read_dfew
from cfer.data.video.export import export_clips, synth_video_command
from cfer.data.video.files import FileClipSource, read_clip
from cfer.data.video.frame_folder import read_frame_folder
from cfer.data.video.preview import write_preview_gif
from cfer.data.video.readers import read_clip_manifest
from cfer.data.video.sampling import random_crop_indices, uniform_indices
from cfer.data.video.splits import make_clip_splits, synthetic_clips
from cfer.data.video.synthetic import SyntheticClipSource
from cfer.data.video.tracking import track_points

__all__ = [
    "ClipLayout", "ClipParts", "ClipSource", "RawClip", "ClipDataset", "CacheInfo", "DEFAULT_CACHE_BYTES",
    "ClipError", "ClipNotFoundError", "VIDEO_EXTENSIONS", "read_video", "read_frame_folder", "read_clip",
    "FileClipSource", "read_clip_manifest", "read_dfew", "DFEW_LABELS", "SyntheticClipSource", "synthetic_clips",
    "make_clip_splits", "export_clips", "synth_video_command", "write_preview_gif", "log_mel", "uniform_indices",
    "random_crop_indices", "track_points",
]
