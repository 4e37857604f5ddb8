"""Tests of `keras_lth.schedules`: tfmot's formulas, step by step."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_lth.schedules import ConstantSparsity
from keras_lth.schedules import PolynomialDecay

FAST = settings(max_examples=60, deadline=None)

# (initial, final, begin, end, power, frequency): shared with the tfmot run.
POLYNOMIAL_CASES = [
    (0.0, 0.8, 0, 20, 3, 4),
    (0.1, 0.9, 5, 17, 2, 3),
    (0.5, 0.5, 2, 12, 3, 1),
    (0.3, 0.6, 3, 9, 1.5, 100),
]
# (target, begin, end, frequency).
CONSTANT_CASES = [
    (0.5, 0, -1, 4),
    (0.75, 3, 11, 2),
    (0.9, 6, 6, 100),
]
STEPS = range(0, 30)


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Overrides the conftest fixture: no Keras objects here, so no
    `clear_session` (~0.15 s per test)."""
    yield


def polynomial_reference(step, initial, final, begin, end, power, frequency):
    """Zhu & Gupta's formula and tfmot's pruning rule, written out again."""
    p = min(1.0, max(0.0, (step - begin) / (end - begin)))
    sparsity = final + (initial - final) * (1 - p) ** power
    should = begin <= step <= end and (step - begin) % frequency == 0
    return should, sparsity


# --- PolynomialDecay ----------------------------------------------------------


@pytest.mark.parametrize("case", POLYNOMIAL_CASES)
def test_polynomial_decay_follows_the_formula_at_every_step(case):
    schedule = PolynomialDecay(*case[:4], power=case[4], frequency=case[5])
    for step in STEPS:
        should, sparsity = schedule(step)
        expected_should, expected = polynomial_reference(step, *case)
        assert type(should) is bool and type(sparsity) is float
        assert should == expected_should, step
        assert sparsity == pytest.approx(expected, abs=1e-12), step


def test_polynomial_decay_prunes_at_exactly_the_scheduled_steps():
    schedule = PolynomialDecay(0.0, 0.8, begin_step=5, end_step=17, frequency=3)
    pruned = [step for step in range(40) if schedule(step)[0]]
    assert pruned == [5, 8, 11, 14, 17]
    # The end step prunes only when it is on a tick: 16 is not.
    schedule = PolynomialDecay(0.0, 0.8, begin_step=4, end_step=16, frequency=5)
    assert [step for step in range(40) if schedule(step)[0]] == [4, 9, 14]


def test_polynomial_decay_values_at_the_ends_and_clamped_outside():
    schedule = PolynomialDecay(0.2, 0.9, begin_step=10, end_step=20, power=3)
    assert schedule(10)[1] == pytest.approx(0.2)
    assert schedule(15)[1] == pytest.approx(0.9 - 0.7 * 0.5**3)
    assert schedule(20)[1] == pytest.approx(0.9)
    assert schedule(0)[1] == pytest.approx(0.2)  # Before: initial.
    assert schedule(10_000)[1] == pytest.approx(0.9)  # After: final.


def test_polynomial_decay_power_shapes_the_curve():
    steps = range(0, 101, 10)
    cubic = [PolynomialDecay(0.0, 0.8, 0, 100, power=3)(t)[1] for t in steps]
    linear = [PolynomialDecay(0.0, 0.8, 0, 100, power=1)(t)[1] for t in steps]
    assert linear == pytest.approx([0.8 * t / 100 for t in steps])
    # Cubic rises faster early on, and meets linear at both ends.
    assert all(c >= lin - 1e-12 for c, lin in zip(cubic, linear))
    assert cubic[1] > linear[1] + 0.1


def test_polynomial_decay_with_begin_equal_to_end_jumps_to_final():
    # tfmot divides by zero here and returns NaN at begin_step.
    schedule = PolynomialDecay(0.1, 0.8, begin_step=5, end_step=5, frequency=2)
    assert schedule(4) == (False, pytest.approx(0.1))
    assert schedule(5) == (True, pytest.approx(0.8))
    assert schedule(7) == (False, pytest.approx(0.8))


@FAST
@given(
    st.floats(0, 0.99),
    st.floats(0, 0.99),
    st.integers(0, 50),
    st.integers(1, 50),
    st.floats(0.5, 5),
    st.integers(1, 10),
)
def test_polynomial_decay_is_monotone_between_its_ends(
    initial, final, begin, span, power, frequency
):
    schedule = PolynomialDecay(initial, final, begin, begin + span, power, frequency)
    values = [schedule(step)[1] for step in range(begin + span + 5)]
    low, high = min(initial, final), max(initial, final)
    assert all(low - 1e-12 <= v <= high + 1e-12 for v in values)
    steps = np.diff(values)
    if initial <= final:
        assert np.all(steps >= -1e-12)
    else:
        assert np.all(steps <= 1e-12)
    pruned = [step for step in range(begin + span + 5) if schedule(step)[0]]
    assert pruned == list(range(begin, begin + span + 1, frequency))


# --- ConstantSparsity ---------------------------------------------------------


def test_constant_sparsity_prunes_forever_without_an_end():
    schedule = ConstantSparsity(0.5, begin_step=3, frequency=4)
    assert [t for t in range(30) if schedule(t)[0]] == [3, 7, 11, 15, 19, 23, 27]
    assert {schedule(t)[1] for t in range(30)} == {0.5}
    assert schedule(10**9 + 3)[0]


def test_constant_sparsity_stops_after_its_end():
    schedule = ConstantSparsity(0.75, begin_step=3, end_step=11, frequency=2)
    assert [t for t in range(30) if schedule(t)[0]] == [3, 5, 7, 9, 11]
    once = ConstantSparsity(0.9, begin_step=6, end_step=6)
    assert [t for t in range(1000) if once(t)[0]] == [6]


def test_schedules_accept_numpy_integer_steps():
    assert PolynomialDecay(0.0, 0.5, 0, 10, frequency=5)(np.int64(5)) == (
        True,
        pytest.approx(0.5 * (1 - 0.5**3)),
    )
    assert ConstantSparsity(0.5, 0, frequency=1)(np.int32(3)) == (True, 0.5)


# --- Validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(initial_sparsity=1.0), ValueError, r"initial_sparsity.*\[0, 1\)"),
        (dict(final_sparsity=-0.1), ValueError, r"final_sparsity.*-0.1"),
        (dict(final_sparsity="0.5"), TypeError, r"final_sparsity='0.5'"),
        (dict(begin_step=-1), ValueError, r"begin_step.*>= 0.*begin_step=-1"),
        (dict(begin_step=1.5), TypeError, r"begin_step=1.5"),
        (dict(end_step=-1), ValueError, r"end_step=-1"),
        (dict(begin_step=10, end_step=5), ValueError, r"begin_step=10, end_step=5"),
        (dict(frequency=0), ValueError, r"frequency=0"),
        (dict(frequency=True), TypeError, r"frequency=True"),
        (dict(power=0), ValueError, r"power=0"),
        (dict(power="3"), TypeError, r"power='3'"),
    ],
)
def test_polynomial_decay_rejects_bad_arguments(kwargs, error, match):
    arguments = dict(
        initial_sparsity=0.0, final_sparsity=0.5, begin_step=0, end_step=10
    )
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        PolynomialDecay(**arguments)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(target_sparsity=1.0), ValueError, r"target_sparsity.*1.0"),
        (dict(target_sparsity=None), TypeError, r"target_sparsity=None"),
        (dict(begin_step=-3), ValueError, r"begin_step=-3"),
        (dict(begin_step=4, end_step=2), ValueError, r"-1 \(no end\) or >="),
        (dict(end_step=-2), ValueError, r"end_step=-2"),
        (dict(frequency=-5), ValueError, r"frequency=-5"),
    ],
)
def test_constant_sparsity_rejects_bad_arguments(kwargs, error, match):
    arguments = dict(target_sparsity=0.5, begin_step=0)
    arguments.update(kwargs)
    with pytest.raises(error, match=match):
        ConstantSparsity(**arguments)


@pytest.mark.parametrize("step", [1.0, "3", None, True])
def test_schedules_reject_a_step_that_is_not_an_int(step):
    with pytest.raises(TypeError, match="Expected the step to be an int"):
        PolynomialDecay(0.0, 0.5, 0, 10)(step)
    with pytest.raises(TypeError, match="Expected the step to be an int"):
        ConstantSparsity(0.5, 0)(step)


# --- Config -------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        PolynomialDecay(0.1, 0.9, 5, 17, power=2, frequency=3),
        ConstantSparsity(0.75, 3, end_step=11, frequency=2),
        ConstantSparsity(0.5, 0),
    ],
    ids=repr,
)
def test_config_round_trip(schedule):
    config = schedule.get_config()
    assert all(not isinstance(v, dict) for v in config.values())  # Flat.
    json.dumps(config)
    clone = type(schedule).from_config(config)
    assert clone.get_config() == config
    assert [clone(t) for t in STEPS] == [schedule(t) for t in STEPS]
    assert repr(clone) == repr(schedule)


def test_from_config_reads_tfmot_nested_configs():
    nested = {
        "class_name": "PolynomialDecay",
        "config": {
            "initial_sparsity": 0.1,
            "final_sparsity": 0.9,
            "power": 3,
            "begin_step": 5,
            "end_step": 17,
            "frequency": 3,
        },
    }
    schedule = PolynomialDecay.from_config(nested)
    assert schedule.get_config() == nested["config"]
    with pytest.raises(ValueError, match="class_name='PolynomialDecay'"):
        ConstantSparsity.from_config(nested)


# --- Against tensorflow-model-optimization ------------------------------------

# Runs in its own process: importing tfmot switches the whole process to
# Keras 2 (TF_USE_LEGACY_KERAS=1). Keras 3 is imported first, so the same
# process can also drive a Keras 3 `GradualPruning` with a tfmot schedule.
_TFMOT_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import keras
    import numpy as np
    import keras_lth
    from keras_lth.callbacks.gradual_pruning import GradualPruning
    import tensorflow_model_optimization as tfmot

    cases = json.loads(sys.argv[1])
    steps = range(cases["steps"])
    out = {"polynomial": [], "constant": []}

    def trajectory(schedule):
        return [
            [bool(should.numpy()), float(sparsity.numpy())]
            for should, sparsity in (schedule(step) for step in steps)
        ]

    for initial, final, begin, end, power, frequency in cases["polynomial"]:
        out["polynomial"].append(trajectory(tfmot.sparsity.keras.PolynomialDecay(
            initial, final, begin, end, power=power, frequency=frequency)))
    for target, begin, end, frequency in cases["constant"]:
        out["constant"].append(trajectory(tfmot.sparsity.keras.ConstantSparsity(
            target, begin, end_step=end, frequency=frequency)))

    keras.utils.set_random_seed(0)
    model = keras_lth.mask_model(keras.Sequential([
        keras.Input((8,)), keras.layers.Dense(16), keras.layers.Dense(3)]))
    model.compile(optimizer="sgd", loss="mse")
    callback = GradualPruning(tfmot.sparsity.keras.PolynomialDecay(
        0.1, 0.8, begin_step=2, end_step=10, frequency=4))
    model.fit(np.ones((32, 8)), np.zeros((32, 3)), batch_size=4, epochs=2,
              verbose=0, callbacks=[callback])
    out["history"] = callback.history
    out["sparsity"] = keras_lth.sparsity(model)["layers"]
    out["legacy_env"] = os.environ.get("TF_USE_LEGACY_KERAS")
    print("JSON:" + json.dumps(out))
    """
)


@pytest.fixture(scope="module", autouse=True)
def tfmot_process(request):
    """Starts the tfmot run before this module's first test, so it overlaps them.

    Only when tfmot is installed (looked up without importing it) and a test
    that reads the run is selected.
    """
    installed = importlib.util.find_spec("tensorflow_model_optimization") is not None
    wanted = any(
        "tfmot_run" in getattr(item, "fixturenames", ())
        for item in request.session.items
    )
    if not (installed and wanted):
        yield None
        return
    cases = {
        "steps": len(STEPS),
        "polynomial": POLYNOMIAL_CASES,
        "constant": CONSTANT_CASES,
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _TFMOT_SCRIPT, json.dumps(cases)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, KERAS_BACKEND="tensorflow"),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.fixture(scope="module")
def tfmot_run(tfmot_process):
    if tfmot_process is None:
        pytest.skip("tensorflow-model-optimization is not installed")
    stdout, stderr = tfmot_process.communicate(timeout=300)
    lines = [x for x in stdout.splitlines() if x.startswith("JSON:")]
    assert tfmot_process.returncode == 0 and lines, stderr[-3000:]
    return json.loads(lines[-1][len("JSON:") :])


def test_tfmot_is_not_imported_here():
    # keras_lth must never import tfmot: it sets TF_USE_LEGACY_KERAS=1.
    importlib.import_module("keras_lth")
    importlib.import_module("keras_lth.callbacks.gradual_pruning")
    importlib.import_module("keras_lth.pruning_at_init")
    assert "tensorflow_model_optimization" not in sys.modules
    assert os.environ.get("TF_USE_LEGACY_KERAS") in (None, "0", "false", "False")


@pytest.mark.slow  # Reads the run of a tfmot process.
def test_same_trajectories_as_tfmot(tfmot_run):
    for case, theirs in zip(POLYNOMIAL_CASES, tfmot_run["polynomial"], strict=True):
        ours = PolynomialDecay(*case[:4], power=case[4], frequency=case[5])
        for step, (should, sparsity) in zip(STEPS, theirs, strict=True):
            assert ours(step)[0] == should, (case, step)
            # tfmot computes in float32.
            assert ours(step)[1] == pytest.approx(sparsity, abs=1e-6), (case, step)
    for case, theirs in zip(CONSTANT_CASES, tfmot_run["constant"], strict=True):
        ours = ConstantSparsity(case[0], case[1], end_step=case[2], frequency=case[3])
        for step, (should, sparsity) in zip(STEPS, theirs, strict=True):
            assert ours(step)[0] == should, (case, step)
            assert ours(step)[1] == pytest.approx(sparsity, abs=1e-6), (case, step)


@pytest.mark.slow  # Reads the run of a tfmot process.
def test_gradual_pruning_runs_a_tfmot_schedule_on_keras_3(tfmot_run):
    # The subprocess trained 2 epochs of 8 steps with tfmot's schedule.
    ours = PolynomialDecay(0.1, 0.8, begin_step=2, end_step=10, frequency=4)
    expected = [(t, ours(t)[1]) for t in range(16) if ours(t)[0]]
    assert [step for step, _ in tfmot_run["history"]] == [2, 6, 10]
    assert [s for _, s in tfmot_run["history"]] == pytest.approx(
        [s for _, s in expected], abs=1e-6
    )
    # Exact counts at the last target: 0.8 of 128 and of 48 weights.
    assert tfmot_run["sparsity"] == {
        "dense/kernel": np.floor(0.8 * 128 + 0.5) / 128,
        "dense_1/kernel": np.floor(0.8 * 48 + 0.5) / 48,
    }
    assert tfmot_run["legacy_env"] == "1"  # tfmot did switch its process.
