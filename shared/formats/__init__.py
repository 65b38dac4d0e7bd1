"""Data formats: emg2pose session files and the dataset's ``metadata.csv``."""

from emgpose.formats.joints import EMG2POSE_JOINTS, finger_of
from emgpose.formats.metadata import METADATA_FILE, MetadataRow, read_metadata, write_metadata
from emgpose.formats.session import SessionChunk, SessionInfo, SessionReader, SessionWriter

__all__ = [
    "EMG2POSE_JOINTS",
    "METADATA_FILE",
    "MetadataRow",
    "SessionChunk",
    "SessionInfo",
    "SessionReader",
    "SessionWriter",
    "finger_of",
    "read_metadata",
    "write_metadata",
]
