"""The synthetic generator: deterministic, bounded, learnable, in the emg2pose layout."""

import numpy as np
import pytest

from emgpose.errors import InvalidInput
from emgpose.formats import SessionReader, read_metadata
from emgpose.formats.joints import EMG2POSE_JOINTS
from emgpose.synth import Anatomy, SynthConfig, generate_session, joint_bounds, plan, write_dataset


def _session(seed=0, user=0, stage=0, duration=6.0, **options):
    config = SynthConfig(duration_s=duration, seed=seed, chunk_samples=5000, **options)
    parts = list(generate_session(config, Anatomy(config), user, stage, 0))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def test_same_seed_same_data_and_other_seed_differs():
    a, b, c = _session(seed=1), _session(seed=1), _session(seed=2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a[1], c[1])


def test_angles_are_smooth_bounded_with_ik_failures():
    config = SynthConfig(duration_s=60.0, ik_failure_share=0.03)
    _, _, angles = (
        np.concatenate([p[i] for p in generate_session(config, Anatomy(config), 0, 0, 0)]) for i in range(3)
    )
    failed = (angles == 0).all(axis=1)
    assert 0.005 < failed.mean() < 0.1
    ok = angles[~failed]
    lo, hi = np.array([joint_bounds(j) for j in EMG2POSE_JOINTS]).T
    assert (ok >= lo).all() and (ok <= hi).all()
    both = ~failed[1:] & ~failed[:-1]
    step = np.abs(np.diff(angles, axis=0)[both]).max()
    assert step < 0.05, f"largest sample-to-sample step {step:.3f} rad is not smooth"
    assert (ok.std(axis=0) > 0.01).all(), "every joint moves"


def test_emg_follows_the_angles():
    """A linear fit from EMG envelope to angles beats the mean: learning is possible."""
    t, emg, angles = _session(duration=30.0)
    env = np.abs(emg - emg.mean(axis=0))
    k = 200
    n = len(env) // k
    x = env[: n * k].reshape(n, k, -1).mean(axis=1)
    y = angles[k - 1 : n * k : k]
    keep = ~(y == 0).all(axis=1)
    x, y = np.column_stack([x[keep], np.ones(keep.sum())]), y[keep]
    half = len(x) // 2
    coef, *_ = np.linalg.lstsq(x[:half], y[:half], rcond=None)
    err = np.abs(x[half:] @ coef - y[half:]).mean()
    base = np.abs(y[:half].mean(axis=0) - y[half:]).mean()
    assert err < 0.8 * base, (err, base)


def test_plan_covers_every_generalization():
    rows = [r for *_, r in plan(SynthConfig(users=3, stages=3, sessions=2))]
    splits = {(r.split, r.generalization) for r in rows}
    assert {("train", ""), ("val", ""), ("test", "user"), ("test", "stage"), ("test", "user_stage")} <= splits
    assert all(r.held_out_user == (r.user == "user02") for r in rows)
    assert all(r.end - r.start == pytest.approx(20.0 - 1.0 - 1 / 2000.0) for r in rows)


def test_write_dataset_files_and_metadata(tmp_path):
    rows = write_dataset(SynthConfig(users=2, stages=2, sessions=1, duration_s=2.0), str(tmp_path))
    assert read_metadata((tmp_path / "metadata.csv").read_text()) == rows
    for row in rows:
        with SessionReader(tmp_path / row.file) as r:
            assert r.info.num_samples == 4000 and r.info.sample_rate == 2000.0
            assert r.info.user == row.user and r.info.stage == row.stage


def test_invalid_configs_say_why():
    with pytest.raises(InvalidInput, match=r"users \(1\) and stages \(3\) must exceed the held-out ones"):
        SynthConfig(users=1)
    with pytest.raises(InvalidInput, match="too short"):
        SynthConfig(duration_s=1.0)


@pytest.mark.parametrize(
    "knob", [{"recruitment": 2.0}, {"sharpness": 3.0}, {"effort_variation": 0.5}], ids=lambda k: next(iter(k))
)
def test_amplitude_shape_options_change_the_emg_not_the_angles(knob):
    base, other = _session(seed=1), _session(seed=1, **knob)
    np.testing.assert_array_equal(base[2], other[2])  # same poses
    assert not np.allclose(base[1], other[1])  # another drive-to-amplitude curve


def test_amplitude_shape_options_are_checked():
    with pytest.raises(InvalidInput, match="recruitment and sharpness must be > 0"):
        SynthConfig(sharpness=0.0)
    with pytest.raises(InvalidInput, match="effort_variation >= 0, got 1.0, 1.0 and -1"):
        SynthConfig(effort_variation=-1)


def _pose_logits(angles):
    lo, hi = np.array([joint_bounds(n) for n in EMG2POSE_JOINTS]).T
    angles = angles[~(angles == 0).all(axis=1)]  # IK-failure rows
    u = (angles - lo) / (hi - lo)
    return np.log(u / (1 - u))


@pytest.mark.parametrize("shared", [0, 6])
def test_shared_stage_synergies_keep_every_stage_in_one_span(shared):
    logits = np.concatenate([_pose_logits(_session(stage=s, stage_synergies=shared)[2]) for s in range(3)])
    design = np.c_[logits, np.ones(len(logits))]  # an affine span: stages move the posture within it
    singular = np.linalg.svd(design, compute_uv=False)
    rank = int(np.sum(singular > 1e-6 * singular[0]))
    if shared:
        assert rank == shared + 1
    else:  # each stage has its own four synergies
        assert rank > 4 + 1 + 4


def test_shared_stage_synergies_leave_the_default_anatomy_alone():
    base, other = Anatomy(SynthConfig()), Anatomy(SynthConfig(stage_synergies=6))
    np.testing.assert_array_equal(base.w, other.w)
    assert other.latents == 6 and not np.allclose(base.stage_mix[0][:, :4], other.stage_mix[0][:, :4])
    with pytest.raises(InvalidInput, match="stage_synergies must be >= 0"):
        SynthConfig(stage_synergies=-1)
