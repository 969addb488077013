"""Face data: the synthetic FACS renderer, readers for real data sets, splits and face crops.

Every loader returns a :class:`cfer.data.FaceDataset` of decoded uint8 images whose labels
index canonical class names from :mod:`cfer.taxonomy`. OpenCV (face cropping) is imported
only when a face is first detected.

Example:
    >>> from cfer.data import FORMATS, FaceDataset
    >>> "imagefolder" in FORMATS
    True
"""

from cfer.data.base import FaceDataset
from cfer.data.export import export_image_folder
from cfer.data.faces import FaceCropper, FaceDetectorUnavailableError, NoFaceFoundError, crop_face
from cfer.data.readers import (
    FORMATS,
    IMAGE_EXTENSIONS,
    MAX_IMAGE_SIDE,
    READERS,
    DatasetError,
    DatasetNotFoundError,
    IgnoredFilesWarning,
    SkippedItemsWarning,
    read_csv_manifest,
    read_dataset,
    read_fer2013,
    read_image_folder,
    read_rafdb,
)
from cfer.data.splits import apply_split, subject_split

__all__ = [
    "FaceDataset",
    "FaceCropper",
    "FaceDetectorUnavailableError",
    "NoFaceFoundError",
    "crop_face",
    "export_image_folder",
    "FORMATS",
    "READERS",
    "IMAGE_EXTENSIONS",
    "MAX_IMAGE_SIDE",
    "DatasetError",
    "DatasetNotFoundError",
    "SkippedItemsWarning",
    "IgnoredFilesWarning",
    "read_dataset",
    "read_csv_manifest",
    "read_fer2013",
    "read_image_folder",
    "read_rafdb",
    "apply_split",
    "subject_split",
]
