"""emg2pose session files: one HDF5 file per hand and stage, read and written in chunks.

Layout (DESIGN.md): group ``emg2pose`` holding one compound dataset ``timeseries`` of shape ``(T,)``
with fields ``time`` (<f8, unix seconds), ``emg`` (<f4, ``(C,)``) and ``joint_angles`` (<f8, ``(J,)``,
radians). The project generalises it: any channel count, any number of named joints (attribute
``joint_names``; the 20 emg2pose names when absent and J == 20), an optional per-sample integer
``label`` for gesture tasks, and ``joint_angles`` may be absent when ``label`` is present. The group
attribute ``sample_rate`` is required.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import h5py
import numpy as np

from emgpose.errors import DataFormatError, NotFound
from emgpose.formats.joints import EMG2POSE_JOINTS

GROUP = "emg2pose"
DATASET = "timeseries"
STRING_ATTRS = ("filename", "session", "stage", "user", "side")
DEFAULT_CHUNK = 65536


@dataclass(frozen=True)
class SessionInfo:
    """What a session file says about itself (group attributes plus the dataset's shape)."""

    path: str
    filename: str
    sample_rate: float
    num_channels: int
    num_samples: int
    joint_names: tuple[str, ...]
    has_label: bool
    session: str = ""
    stage: str = ""
    user: str = ""
    side: str = ""
    start: float = float("nan")
    end: float = float("nan")
    channel_names: tuple[str, ...] = ()
    label_names: tuple[str, ...] = ()

    @property
    def has_joints(self) -> bool:
        return len(self.joint_names) > 0

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


@dataclass
class SessionChunk:
    """Consecutive samples of one session; ``offset`` is the index of the first sample."""

    offset: int
    time: np.ndarray  # (n,) float64
    emg: np.ndarray  # (n, C) float32
    joint_angles: np.ndarray | None = None  # (n, J) float64
    label: np.ndarray | None = None  # (n,) int64

    def __len__(self) -> int:
        return int(self.time.shape[0])


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value[()])
    return str(value)


def _names(value: object) -> tuple[str, ...]:
    return tuple(_text(v) for v in np.atleast_1d(value))


class SessionReader:
    """Reads one session file lazily; nothing but the attributes is loaded on open.

    >>> with SessionReader("s.hdf5") as r:               # doctest: +SKIP
    ...     i0, i1 = r.index_range(r.info.start, r.info.start + 10.0)
    ...     for chunk in r.iter_chunks(start=i0, stop=i1): ...
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise NotFound(f"{self.path}: session file does not exist")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise DataFormatError(f"{self.path}: not a readable HDF5 file ({exc})") from exc
        try:
            self._ds, self.info = self._inspect()
        except Exception:
            self._file.close()
            raise

    def _inspect(self) -> tuple[h5py.Dataset, SessionInfo]:
        where = self.path
        if GROUP not in self._file:
            raise DataFormatError(f"{where}: missing HDF5 group '{GROUP}' (emg2pose layout)")
        group = self._file[GROUP]
        if DATASET not in group:
            raise DataFormatError(f"{where}: missing dataset '{GROUP}/{DATASET}'")
        ds = group[DATASET]
        fields = ds.dtype.fields or {}
        for name in ("time", "emg"):
            if name not in fields:
                raise DataFormatError(f"{where}: '{GROUP}/{DATASET}' has no field '{name}'")
        if "joint_angles" not in fields and "label" not in fields:
            raise DataFormatError(f"{where}: '{GROUP}/{DATASET}' needs a 'joint_angles' or a 'label' field (targets)")
        attrs = group.attrs
        if "sample_rate" not in attrs:
            raise DataFormatError(f"{where}: group attribute 'sample_rate' is required")
        rate = float(attrs["sample_rate"])
        if not np.isfinite(rate) or rate <= 0:
            raise DataFormatError(f"{where}: sample_rate must be a positive number, got {rate}")
        emg_shape = fields["emg"][0].shape
        channels = int(emg_shape[0]) if emg_shape else 1
        if "num_channels" in attrs and int(attrs["num_channels"]) != channels:
            raise DataFormatError(
                f"{where}: attribute num_channels={int(attrs['num_channels'])} but field 'emg' has {channels} channels"
            )
        joints: tuple[str, ...] = ()
        if "joint_angles" in fields:
            shape = fields["joint_angles"][0].shape
            n_joints = int(shape[0]) if shape else 1
            if "joint_names" in attrs:
                joints = _names(attrs["joint_names"])
            elif n_joints == len(EMG2POSE_JOINTS):
                joints = EMG2POSE_JOINTS
            else:
                raise DataFormatError(
                    f"{where}: {n_joints} joint angles but no 'joint_names' attribute "
                    f"(only the 20-joint emg2pose layout may omit it)"
                )
            if len(joints) != n_joints:
                raise DataFormatError(f"{where}: joint_names lists {len(joints)} names for {n_joints} joint angles")
        info = SessionInfo(
            path=self.path,
            filename=_text(attrs.get("filename", os.path.splitext(os.path.basename(where))[0])),
            sample_rate=rate,
            num_channels=channels,
            num_samples=int(ds.shape[0]),
            joint_names=joints,
            has_label="label" in fields,
            start=float(attrs.get("start", np.nan)),
            end=float(attrs.get("end", np.nan)),
            channel_names=_names(attrs["channel_names"]) if "channel_names" in attrs else (),
            label_names=_names(attrs["label_names"]) if "label_names" in attrs else (),
            **{k: _text(attrs[k]) for k in ("session", "stage", "user", "side") if k in attrs},
        )
        return ds, info

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def time_at(self, index: int) -> float:
        return float(self._ds.fields("time")[index])

    def index_range(self, t0: float | None, t1: float | None) -> tuple[int, int]:
        """Sample indices ``[i0, i1)`` with ``t0 <= time < t1``, by binary search (O(log T) reads)."""
        n = self.info.num_samples
        return (
            0 if t0 is None or np.isnan(t0) else self._search(t0),
            n if t1 is None or np.isnan(t1) else self._search(t1, inclusive=True),
        )

    def _search(self, t: float, inclusive: bool = False) -> int:
        """First index whose time is >= t (> t when ``inclusive``).

        Samples are nearly evenly spaced, so the index the sample rate predicts is checked first (two
        reads); a binary search over the file settles anything else.
        """

        def before(i: int) -> bool:  # is sample i still before the boundary?
            value = self.time_at(i)
            return value < t or (inclusive and value == t)

        n = self.info.num_samples
        if n == 0:
            return 0
        guess = int(np.clip(np.ceil((t - self.time_at(0)) * self.info.sample_rate), 0, n))
        if (guess == 0 or before(guess - 1)) and (guess == n or not before(guess)):
            return guess
        lo, hi = 0, n
        while lo < hi:
            mid = (lo + hi) // 2
            if before(mid):
                lo = mid + 1
            else:
                hi = mid
        return lo

    def read(self, start: int = 0, stop: int | None = None) -> SessionChunk:
        """Samples ``[start, stop)``; only those rows are read from disk."""
        stop = self.info.num_samples if stop is None else min(stop, self.info.num_samples)
        rows = self._ds[start:stop]
        names = rows.dtype.names or ()
        emg = np.asarray(rows["emg"], dtype=np.float32).reshape(len(rows), self.info.num_channels)
        joints = None
        if "joint_angles" in names:
            joints = np.asarray(rows["joint_angles"], dtype=np.float64)
            joints = joints.reshape(len(rows), len(self.info.joint_names))
        label = np.asarray(rows["label"], dtype=np.int64) if "label" in names else None
        return SessionChunk(
            offset=start,
            time=np.asarray(rows["time"], dtype=np.float64),
            emg=emg,
            joint_angles=joints,
            label=label,
        )

    def iter_chunks(
        self, chunk_size: int = DEFAULT_CHUNK, start: int = 0, stop: int | None = None
    ) -> Iterator[SessionChunk]:
        """Yields ``[start, stop)`` in chunks of at most ``chunk_size`` samples."""
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        stop = self.info.num_samples if stop is None else min(stop, self.info.num_samples)
        for i in range(start, stop, chunk_size):
            yield self.read(i, min(i + chunk_size, stop))


def session_dtype(num_channels: int, num_joints: int, with_label: bool) -> np.dtype:
    fields: list[tuple] = [("time", "<f8"), ("emg", "<f4", (num_channels,))]
    if num_joints:
        fields.append(("joint_angles", "<f8", (num_joints,)))
    if with_label:
        fields.append(("label", "<i4"))
    return np.dtype(fields)


class SessionWriter:
    """Writes a session file in the emg2pose layout, appending chunks without holding them all.

    The file is written under a temporary name and renamed into place on a clean close, so a reader
    never sees a half-written session; ``start``/``end`` attributes default to the first/last time.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample_rate: float,
        num_channels: int,
        joint_names: Sequence[str] = EMG2POSE_JOINTS,
        with_label: bool = False,
        filename: str | None = None,
        user: str = "",
        session: str = "",
        stage: str = "",
        side: str = "",
        channel_names: Sequence[str] = (),
        label_names: Sequence[str] = (),
        chunk_rows: int = 4096,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if num_channels <= 0:
            raise ValueError(f"num_channels must be positive, got {num_channels}")
        if not joint_names and not with_label:
            raise ValueError("a session needs joint_names (regression) or with_label (gestures)")
        self.path = os.fspath(path)
        self._tmp = f"{self.path}.part-{os.getpid()}"
        self.num_channels = num_channels
        self.num_joints = len(joint_names)
        self.with_label = with_label
        self._dtype = session_dtype(num_channels, self.num_joints, with_label)
        self._file = h5py.File(self._tmp, "w")
        group = self._file.create_group(GROUP)
        self._ds = group.create_dataset(DATASET, shape=(0,), maxshape=(None,), dtype=self._dtype, chunks=(chunk_rows,))
        base = filename or os.path.splitext(os.path.basename(self.path))[0]
        attrs = group.attrs
        for key, value in zip(STRING_ATTRS, (base, session, stage, user, side), strict=True):
            attrs[key] = value
        attrs["sample_rate"] = float(sample_rate)
        attrs["num_channels"] = int(num_channels)
        if joint_names:
            attrs["joint_names"] = np.array(list(joint_names), dtype=h5py.string_dtype())
        if channel_names:
            attrs["channel_names"] = np.array(list(channel_names), dtype=h5py.string_dtype())
        if label_names:
            attrs["label_names"] = np.array(list(label_names), dtype=h5py.string_dtype())
        self._group = group
        self._first: float | None = None
        self._last: float | None = None

    def append(
        self,
        time: np.ndarray,
        emg: np.ndarray,
        joint_angles: np.ndarray | None = None,
        label: np.ndarray | None = None,
    ) -> None:
        n = len(time)
        emg = np.asarray(emg)
        if emg.shape != (n, self.num_channels):
            raise ValueError(f"emg must have shape ({n}, {self.num_channels}), got {emg.shape}")
        rows = np.empty(n, dtype=self._dtype)
        rows["time"] = time
        rows["emg"] = emg
        if self.num_joints:
            if joint_angles is None or np.shape(joint_angles) != (n, self.num_joints):
                raise ValueError(
                    f"joint_angles must have shape ({n}, {self.num_joints}), "
                    f"got {None if joint_angles is None else np.shape(joint_angles)}"
                )
            rows["joint_angles"] = joint_angles
        if self.with_label:
            if label is None or np.shape(label) != (n,):
                raise ValueError(f"label must have shape ({n},)")
            rows["label"] = label
        if n == 0:
            return
        old = self._ds.shape[0]
        self._ds.resize((old + n,))
        self._ds[old:] = rows
        self._first = float(time[0]) if self._first is None else self._first
        self._last = float(time[-1])

    def close(self, start: float | None = None, end: float | None = None) -> None:
        """Finishes the file and moves it into place."""
        attrs = self._group.attrs
        attrs["start"] = float(start if start is not None else (self._first or 0.0))
        attrs["end"] = float(end if end is not None else (self._last or 0.0))
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        if os.path.exists(self._tmp):
            os.remove(self._tmp)

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
