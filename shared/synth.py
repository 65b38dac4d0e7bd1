"""Synthetic sessions in the emg2pose layout, whose EMG follows a known forward model of the angles.

The model, per session (all of it deterministic for a seed):

* **Joint angles**: four smooth latent synergies (low-pass filtered noise, a stage-specific bandwidth)
  mixed by a stage-specific matrix and squashed into each joint's physiological range.
* **Muscle activation** per channel: ``softplus(W_u @ pose + V_u @ velocity + b)``, where ``W``/``V``
  (the "anatomy") are shared by everyone and perturbed per user (``user_variation``), with a per-user
  electrode gain. Stages perturb shared pose synergies (``stage_variation``); as in emg2pose, a new
  stage is harder to generalise to than a new user (docs/results.md). With ``stage_synergies`` N > 0,
  every stage instead draws on one basis of N hand synergies (as in Santello et al. 1998, where a few
  postural synergies span grasps of many kinds) and stages differ only in how much they use each
  synergy and around which posture, so a new stage's poses stay in the span of the training ones. Optional shapes of the
  drive-to-amplitude curve: ``softplus(s * drive) / s`` (``sharpness`` s: muscles silent outside
  their range), raised to ``recruitment`` (amplitude growing faster than the drive), and a slow
  co-contraction factor ``exp(effort_variation * slow noise)`` on every muscle at once. The defaults
  leave them off; ``bench/synth_variants.py`` measures what they change.
* **EMG** = activation x band-limited (30-400 Hz) noise + 50 Hz mains hum + slow baseline drift +
  white sensor noise.
* **IK failures**: a few short stretches where every angle is exactly zero (EMG continues).

Sessions are written chunk by chunk, so any size fits in bounded memory.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy import signal

from emgpose.errors import InvalidInput
from emgpose.formats.joints import EMG2POSE_JOINTS
from emgpose.formats.metadata import METADATA_FILE, MetadataRow, write_metadata
from emgpose.formats.session import SessionWriter
from emgpose.store import open_store

STAGES = (
    "FingerFreeform",
    "HandClawGraspFlicks",
    "CountingUpDown",
    "ThumbsSwirls",
    "WristFlexion",
    "Pinches",
)
_BOUNDS = {  # radians, by joint suffix
    "CMC_FE": (-0.3, 0.8),
    "CMC_AA": (0.0, 1.0),
    "THUMB_MCP_FE": (0.0, 1.0),
    "IP_FE": (-0.2, 1.3),
    "MCP_AA": (-0.35, 0.35),
    "MCP_FE": (-0.35, 1.57),
    "PIP_FE": (0.0, 1.75),
    "DIP_FE": (0.0, 1.4),
}
LATENTS = 4
EPOCH = 1_600_000_000.0  # unix seconds of the first synthetic session


def session_t0(user: int, stage: int, session: int) -> float:
    """Unix time of a session's first sample (sessions never overlap)."""
    return EPOCH + 3600.0 * (user * 1000 + stage * 10 + session)


def joint_bounds(name: str) -> tuple[float, float]:
    for suffix in ("THUMB_MCP_FE", "CMC_FE", "CMC_AA", "IP_FE", "MCP_AA", "MCP_FE", "PIP_FE", "DIP_FE"):
        if name.endswith(suffix):
            return _BOUNDS[suffix]
    raise KeyError(name)


@dataclass(frozen=True)
class SynthConfig:
    users: int = 4
    stages: int = 3
    sessions: int = 2
    duration_s: float = 20.0
    sample_rate: float = 2000.0
    channels: int = 16
    seed: int = 0
    held_out_users: int = 1
    held_out_stages: int = 1
    ik_failure_share: float = 0.01
    mains_hz: float = 50.0
    trim_s: float = 0.5
    chunk_samples: int = 32768
    user_variation: float = 0.2  # how far each user's anatomy and electrode gains stray from the shared one
    stage_variation: float = 0.3  # how far each stage's pose synergies stray from the shared ones
    recruitment: float = 1.0  # EMG amplitude grows as drive**recruitment (motor-unit recruitment curvature)
    sharpness: float = 1.0  # softplus(s*x)/s: larger values make each muscle silent outside its action range
    effort_variation: float = 0.0  # slow co-contraction: all muscles' drive scaled by exp(k * slow noise)
    stage_synergies: int = 0  # > 0: all stages share this many pose synergies (weights and centre per stage)

    def __post_init__(self) -> None:
        if not 1 <= self.stages <= len(STAGES):
            raise InvalidInput(f"stages must be 1..{len(STAGES)}, got {self.stages}")
        if self.user_variation < 0 or self.stage_variation < 0:
            raise InvalidInput(
                f"user_variation and stage_variation must be >= 0, got {self.user_variation} and {self.stage_variation}"
            )
        if self.recruitment <= 0 or self.sharpness <= 0 or self.effort_variation < 0:
            raise InvalidInput(
                f"recruitment and sharpness must be > 0 and effort_variation >= 0, got {self.recruitment}, "
                f"{self.sharpness} and {self.effort_variation}"
            )
        if self.stage_synergies < 0:
            raise InvalidInput(f"stage_synergies must be >= 0 (0: each stage has its own), got {self.stage_synergies}")
        if self.sessions < 1 or self.channels < 1:
            raise InvalidInput(f"sessions and channels must be at least 1, got {self.sessions} and {self.channels}")
        if self.held_out_users >= self.users or self.held_out_stages >= self.stages:
            raise InvalidInput(
                f"users ({self.users}) and stages ({self.stages}) must exceed the held-out ones "
                f"({self.held_out_users} user, {self.held_out_stages} stage) to leave training data: "
                f"use at least {self.held_out_users + 1} users and {self.held_out_stages + 1} stages"
            )
        if self.duration_s <= 2 * self.trim_s + 0.25:
            raise InvalidInput(
                f"duration {self.duration_s} s is too short: sessions are trimmed by {self.trim_s} s at each end"
            )

    @property
    def bytes_per_session(self) -> int:
        return int(self.duration_s * self.sample_rate) * (8 + 4 * self.channels + 8 * len(EMG2POSE_JOINTS))


class Anatomy:
    """Dataset-wide forward-model parameters, and their per-user and per-stage variants."""

    def __init__(self, config: SynthConfig) -> None:
        rng = np.random.default_rng([config.seed, 0])
        j, c = len(EMG2POSE_JOINTS), config.channels
        mask = rng.random((c, j)) < 0.3
        self.w = rng.normal(0, 1.0, (c, j)) * mask + rng.normal(0, 0.15, (c, j))
        self.v = rng.normal(0, 0.6, (c, j)) * mask
        self.bias = rng.normal(-1.0, 0.3, c)
        mix, offset, k = rng.normal(0, 1.2, (j, LATENTS)), rng.normal(0, 0.5, j), config.stage_variation
        self.stage_mix = [mix + k * rng.normal(0, 1.2, (j, LATENTS)) for _ in range(config.stages)]
        self.stage_offset = [offset + k * rng.normal(0, 0.7, j) for _ in range(config.stages)]
        self.stage_hz = rng.uniform(0.4, 1.6, config.stages)
        self.latents = LATENTS
        if config.stage_synergies:
            self._share_synergies(config)
        self.lo, self.hi = np.array([joint_bounds(n) for n in EMG2POSE_JOINTS]).T
        self.seed = config.seed
        self.user_variation = config.user_variation

    def _share_synergies(self, config: SynthConfig) -> None:
        """One synergy basis for every stage; a stage scales each synergy and moves the posture it swings around."""
        rng = np.random.default_rng([config.seed, 4])  # a stream of its own: the default anatomy is unchanged
        n, k = config.stage_synergies, config.stage_variation
        mix = rng.normal(0, 1.2, (len(EMG2POSE_JOINTS), n)) * math.sqrt(LATENTS / n)
        offset = rng.normal(0, 0.5, len(EMG2POSE_JOINTS))
        self.latents = n
        self.stage_mix = [mix * np.exp(k * rng.normal(0, 1.7, n)) for _ in range(config.stages)]
        self.stage_offset = [offset + mix @ (k * rng.normal(0, 1.7, n)) for _ in range(config.stages)]

    def for_user(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, 1, user])
        k = self.user_variation
        w = self.w + k * rng.normal(0, 1.0, self.w.shape) * (np.abs(self.w) + 0.2)
        v = self.v + k * rng.normal(0, 0.6, self.v.shape)
        gain = np.exp(k * rng.normal(0, 0.8, self.w.shape[0]))
        return w, v, gain


class _Filter:
    """A stateful SOS filter over (n, k) chunks, with unit output variance for white input."""

    def __init__(self, sos: np.ndarray, width: int) -> None:
        self.sos = sos
        impulse = signal.sosfilt(sos, np.r_[1.0, np.zeros(200_000)])
        self.scale = 1.0 / math.sqrt(float(np.sum(impulse**2)))
        self.zi = np.zeros((sos.shape[0], 2, width))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y, self.zi = signal.sosfilt(self.sos, x, axis=0, zi=self.zi)
        return y * self.scale


def _ik_mask(rng: np.random.Generator, n: int, rate: float, share: float) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mean_len = int(0.25 * rate)
    for _ in range(rng.poisson(share * n / max(mean_len, 1))):
        start = int(rng.integers(0, max(n - mean_len, 1)))
        mask[start : start + int(rng.integers(mean_len // 2, 2 * mean_len))] = True
    return mask


def generate_session(
    config: SynthConfig, anatomy: Anatomy, user: int, stage: int, session: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yields ``(time, emg, joint_angles)`` chunks of one session."""
    fs, c = config.sample_rate, config.channels
    rng = np.random.default_rng([config.seed, 2, user, stage, session])
    w, v, gain = anatomy.for_user(user)
    latent = _Filter(signal.butter(2, anatomy.stage_hz[stage], fs=fs, output="sos"), anatomy.latents)
    carrier = _Filter(signal.butter(2, [30.0, min(400.0, 0.45 * fs)], "bandpass", fs=fs, output="sos"), c)
    drift = _Filter(signal.butter(1, 0.2, fs=fs, output="sos"), c)
    effort = _Filter(signal.butter(1, 0.3, fs=fs, output="sos"), 1)
    effort_rng = np.random.default_rng([config.seed, 3, user, stage, session])  # leaves the main stream alone
    mix, offset = anatomy.stage_mix[stage], anatomy.stage_offset[stage]
    span = anatomy.hi - anatomy.lo
    n_total = int(config.duration_s * fs)
    ik = _ik_mask(rng, n_total, fs, config.ik_failure_share)
    hum_phase = rng.uniform(0, 2 * np.pi, c)
    t0 = session_t0(user, stage, session)
    previous: np.ndarray | None = None
    for i in range(0, n_total, config.chunk_samples):
        n = min(config.chunk_samples, n_total - i)
        t = (np.arange(i, i + n) / fs)[:, None]
        z = latent(rng.normal(size=(n, anatomy.latents)))
        angles = anatomy.lo + span / (1.0 + np.exp(-(z @ mix.T + offset)))
        history = angles[:1] if previous is None else previous
        velocity = np.diff(np.concatenate([history, angles]), axis=0) * fs / 4.0
        previous = angles[-1:]
        pose = (angles - anatomy.lo) / span - 0.5
        drive = pose @ w.T * 2.0 + velocity / span @ v.T + anatomy.bias
        activation = np.logaddexp(0.0, config.sharpness * drive) / config.sharpness
        if config.recruitment != 1.0:
            activation = activation**config.recruitment
        if config.effort_variation:
            activation = activation * np.exp(config.effort_variation * effort(effort_rng.normal(size=(n, 1))))
        emg = 0.05 * gain * activation * carrier(rng.normal(size=(n, c)))
        emg += 0.01 * np.sin(2 * np.pi * config.mains_hz * t + hum_phase)
        emg += 0.02 * drift(rng.normal(size=(n, c))) + 0.002 * rng.normal(size=(n, c))
        angles[ik[i : i + n]] = 0.0
        yield (t0 + t[:, 0], emg.astype(np.float32), angles)


def _split(config: SynthConfig, user: int, stage: int, session: int) -> tuple[str, str]:
    new_user = user >= config.users - config.held_out_users
    new_stage = stage >= config.stages - config.held_out_stages
    if new_user or new_stage:
        return "test", {(True, True): "user_stage", (True, False): "user", (False, True): "stage"}[
            (new_user, new_stage)
        ]
    is_val = config.sessions > 1 and session == config.sessions - 1 and stage == 0
    return ("val" if is_val else "train"), ""


def plan(config: SynthConfig) -> list[tuple[int, int, int, MetadataRow]]:
    """Every session the config describes, with its metadata row (time range trimmed at both ends)."""
    out = []
    for user in range(config.users):
        for session in range(config.sessions):
            for stage in range(config.stages):
                split, gen = _split(config, user, stage, session)
                t0 = session_t0(user, stage, session)
                last = t0 + (int(config.duration_s * config.sample_rate) - 1) / config.sample_rate
                row = MetadataRow(
                    filename=f"user{user:02d}_session{session}_{STAGES[stage]}",
                    split=split,
                    user=f"user{user:02d}",
                    session=f"user{user:02d}_session{session}",
                    stage=STAGES[stage],
                    side="right",
                    moving_hand="right",
                    held_out_user=user >= config.users - config.held_out_users,
                    held_out_stage=stage >= config.stages - config.held_out_stages,
                    generalization=gen,
                    start=t0 + config.trim_s,
                    end=last - config.trim_s,
                )
                out.append((user, stage, session, row))
    return out


def write_dataset(
    config: SynthConfig, out_uri: str, progress: Callable[[int, int], None] | None = None
) -> list[MetadataRow]:
    """Writes every session and ``metadata.csv`` (last) to a folder or object-store URI."""
    store = open_store(out_uri)
    anatomy = Anatomy(config)
    sessions = plan(config)
    total = len(sessions) * int(config.duration_s * config.sample_rate)
    done = 0
    with tempfile.TemporaryDirectory(prefix="emgpose-synth-") as tmp:
        for user, stage, session, row in sessions:
            path = os.path.join(tmp, row.file)
            with SessionWriter(
                path,
                sample_rate=config.sample_rate,
                num_channels=config.channels,
                filename=row.filename,
                user=row.user,
                session=row.session,
                stage=row.stage,
                side=row.side,
            ) as writer:
                for t, emg, angles in generate_session(config, anatomy, user, stage, session):
                    writer.append(t, emg, angles)
                    done += len(t)
                    if progress:
                        progress(done, total)
            store.put_file(row.file, path)
            os.remove(path)
    rows = [row for *_, row in sessions]
    store.put_bytes(METADATA_FILE, write_metadata(rows).encode())
    return rows
