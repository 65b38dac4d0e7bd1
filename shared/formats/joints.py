"""Joint names: the 20 emg2pose hand joints and how they group into fingers."""

from __future__ import annotations

_FINGERS = ("INDEX", "MIDDLE", "RING", "PINKY")

EMG2POSE_JOINTS: tuple[str, ...] = (
    "THUMB_CMC_FE",
    "THUMB_CMC_AA",
    "THUMB_MCP_FE",
    "THUMB_IP_FE",
    *(f"{finger}_{joint}" for finger in _FINGERS for joint in ("MCP_AA", "MCP_FE", "PIP_FE", "DIP_FE")),
)


def finger_of(joint: str) -> str | None:
    """``"INDEX_PIP_FE" -> "index"``; ``None`` for names outside the emg2pose scheme."""
    head = joint.split("_", 1)[0].upper()
    return head.lower() if head in ("THUMB", *_FINGERS) else None
