"""Joint-angle conventions at import: a sign and an offset per user (or for everyone), and a warning when
the sessions of one dataset disagree in sign or range.

Labs record the same joint with different conventions: in the UCI lower-limb data two subjects' knee
angles run from about -60 to 0 degrees where the others run from 0 to 60. A model trained across them
learns the average of two conventions. ``--target-sign 7N=-1,10A=-1`` (or ``-1`` for everyone) and
``--target-offset 3A=10deg`` put them on one convention while importing; the importer also compares
the sessions' angle distributions and writes a note naming the ones that disagree, with the option that
would fix them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from emgpose.errors import InvalidInput

ONE_SIDED = 0.25  # |median| above this share of the 5-95 % spread: the session's angles keep one sign
RANGE_RATIO = 4.0  # a session's spread this many times above or below the others' median: a note


def _per_user(text: str, what: str, parse: type | object) -> tuple[float | None, dict[str, float]]:
    """``"-1"`` -> (-1, {}); ``"7N=-1,10A=-1"`` -> (None, {"7N": -1, "10A": -1})."""
    default, users = None, {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        user, sep, value = item.rpartition("=")
        try:
            number = parse(value)  # type: ignore[operator]
        except ValueError:
            raise InvalidInput(f"{what}: {item!r} is not a value or USER=VALUE") from None
        if not sep:
            if default is not None:
                raise InvalidInput(f"{what}: more than one value for everyone in {text!r}")
            default = number
        elif not user:
            raise InvalidInput(f"{what}: {item!r} names no user before '='")
        else:
            users[user] = number
    return default, users


def _sign(value: str) -> float:
    number = float(value)
    if number not in (-1.0, 1.0):
        raise ValueError(value)
    return number


def _angle(value: str) -> float:
    """Radians; ``10deg`` or ``10°`` in degrees."""
    text = value.strip().lower()
    for suffix in ("deg", "°"):
        if text.endswith(suffix):
            return math.radians(float(text[: -len(suffix)]))
    return float(text.removesuffix("rad"))


@dataclass(frozen=True)
class TargetConvention:
    """``angle * sign + offset`` per user (radians); users not named get the defaults."""

    sign: float = 1.0
    offset: float = 0.0
    signs: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, sign: str | None = None, offset: str | None = None) -> TargetConvention:
        """From the command line's ``--target-sign`` and ``--target-offset`` texts."""
        default_sign, signs = _per_user(sign or "", "--target-sign (1 or -1, or USER=-1,...)", _sign)
        default_offset, offsets = _per_user(offset or "", "--target-offset (radians, or 10deg)", _angle)
        return cls(default_sign or 1.0, default_offset or 0.0, signs, offsets)

    def check_users(self, users: Sequence[str]) -> None:
        unknown = sorted((set(self.signs) | set(self.offsets)) - set(users))
        if unknown:
            raise InvalidInput(
                f"--target-sign/--target-offset name users {unknown}, but the files hold {sorted(users)}"
            )

    @property
    def is_identity(self) -> bool:
        return self.sign == 1.0 and self.offset == 0.0 and not self.signs and not self.offsets

    def apply(self, user: str, angles: np.ndarray) -> np.ndarray:
        sign, offset = self.signs.get(user, self.sign), self.offsets.get(user, self.offset)
        return angles if sign == 1.0 and offset == 0.0 else angles * sign + offset

    def describe(self, user: str) -> str | None:
        sign, offset = self.signs.get(user, self.sign), self.offsets.get(user, self.offset)
        if sign == 1.0 and offset == 0.0:
            return None
        return f"angles x {sign:g} + {math.degrees(offset):g} deg"


@dataclass
class AngleSummary:
    """One session's joint-angle distribution (radians), for the consistency check."""

    user: str
    session: str
    median: np.ndarray  # (J,)
    low: np.ndarray  # 5th percentile
    high: np.ndarray  # 95th percentile

    @classmethod
    def of(cls, user: str, session: str, angles: np.ndarray) -> AngleSummary | None:
        finite = angles[np.isfinite(angles).all(axis=1)]
        if len(finite) == 0:
            return None
        low, median, high = np.percentile(finite, [5, 50, 95], axis=0)
        return cls(user, session, median, low, high)


def disagreements(summaries: Sequence[AngleSummary], joint_names: Sequence[str]) -> list[str]:
    """Notes naming the sessions whose angles run with the other sign, or over a very different range."""
    notes: list[str] = []
    if len(summaries) < 2:
        return notes
    for j, joint in enumerate(joint_names):
        spread = np.array([s.high[j] - s.low[j] for s in summaries])
        median = np.array([s.median[j] for s in summaries])
        one_sided = np.abs(median) > ONE_SIDED * np.maximum(spread, 1e-12)
        negative = [s for s, m, o in zip(summaries, median, one_sided, strict=True) if o and m < 0]
        positive = [s for s, m, o in zip(summaries, median, one_sided, strict=True) if o and m > 0]
        if negative and positive:
            minority = negative if len(negative) <= len(positive) else positive
            users = sorted({s.user or s.session for s in minority})
            lo = math.degrees(min(s.low[j] for s in minority))
            hi = math.degrees(max(s.high[j] for s in minority))
            notes.append(
                f"joint {joint}: {len(minority)} session(s) of {', '.join(users)} run from {lo:.0f} to {hi:.0f} deg, "
                f"with the opposite sign to the other {len(summaries) - len(minority)}; if that is a recording "
                f"convention, import with --target-sign {','.join(f'{u}=-1' for u in users)}"
            )
        typical = float(np.median(spread))
        if typical > 0:
            ratio = spread / typical
            odd = [s for s, r in zip(summaries, ratio, strict=True) if r > RANGE_RATIO or r * RANGE_RATIO < 1]
            if odd:
                names = ", ".join(sorted(s.session for s in odd))
                notes.append(
                    f"joint {joint}: session(s) {names} move over a range more than {RANGE_RATIO:g}x away from "
                    f"the others' ({math.degrees(typical):.0f} deg between the 5th and 95th percentile): "
                    f"check units and calibration"
                )
    return notes
