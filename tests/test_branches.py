"""`keras_lth.branches`: the controls as branches of IMP levels, resumable."""

import json

import keras
import numpy as np
import pytest

import keras_lth as lth
from keras_lth import branches
from keras_lth.structured import count_live_units
from keras_lth.structured import is_unit_sparse

EPOCHS = 2


def build(seed=0):
    keras.utils.set_random_seed(seed)
    model = lth.mask_model(
        keras.Sequential(
            [
                keras.Input((64,)),
                keras.layers.Dense(32, activation="relu", name="hidden"),
                keras.layers.Dense(10, name="output"),
            ]
        )
    )
    model.compile(
        "adam", keras.losses.SparseCategoricalCrossentropy(True), metrics=["accuracy"]
    )
    return model


def fit(model, ticket, digits):
    x, y, xv, yv = digits
    model.fit(
        x[:400],
        y[:400],
        validation_data=(xv, yv),
        batch_size=64,
        epochs=ticket.total_epochs,
        callbacks=[ticket],
        verbose=0,
    )


@pytest.fixture
def imp_run(digits, tmp_path):
    """A 4-round IMP run with its levels at rounds 1 and 3 saved."""
    model = build()
    ticket = lth.LotteryTicket(4, EPOCHS, prune_rate=0.5, seed=0, verbose=0)
    fit(model, ticket, digits)
    for round_index in (1, 3):
        branches.save_level(tmp_path, ticket, round_index)
    return ticket, tmp_path


def test_level_rounds_takes_the_nearest_round_the_run_reached():
    rows = [{"round": r, "weights_remaining": 0.8**r} for r in range(8)]
    # 0.8 ** 3 = 0.512 and 0.8 ** 7 = 0.21; 7.0% is beyond the run's 21%.
    assert branches.level_rounds(rows) == [3, 7]
    assert branches.level_rounds(rows, [0.5, 0.52]) == [3]  # No repeats.
    with pytest.raises(ValueError, match=r"\(0, 1\]. Received: 51.3"):
        branches.level_rounds(rows, [51.3])


def test_the_folder_reads_as_it_is(imp_run):
    ticket, folder = imp_run
    names = sorted(p.name for p in (folder / "levels").iterdir())
    assert names == [branches.level_name(ticket.results[r]) for r in (1, 3)]
    assert names[0].startswith("round_01_") and names[0].endswith("pct")
    level = folder / "levels" / names[1]
    saved = json.loads((level / "level.json").read_text())
    assert saved == {**ticket.results[3], "granularity": "weight"}
    masks = branches.load_masks(level / "masks.npz")
    for key, mask in ticket.masks_at(3).items():
        np.testing.assert_array_equal(masks[key], mask)


def test_branches_keep_the_level_masks_or_their_counts_and_skip_when_done(
    imp_run, digits
):
    ticket, folder = imp_run
    trained = []

    def train(model, name):
        trained.append(name)
        one = lth.LotteryTicket(1, EPOCHS, verbose=0)
        fit(model, one, digits)
        return one.results[0]

    found = branches.run_branches(folder, build, train, seed=0, log=lambda _: None)
    assert len(trained) == 4
    assert sorted(found) == ["random", "reinit"]
    assert [row["round"] for row in found["reinit"]] == [1, 3]
    for control in ("reinit", "random"):
        for row in found[control]:
            level = ticket.results[row["round"]]
            assert row["control"] == control
            assert row["weights_remaining"] == pytest.approx(level["weights_remaining"])
            branch = folder / "branches" / control / branches.level_name(level)
            masks = branches.load_masks(branch / "masks.npz")
            for key, mask in ticket.masks_at(row["round"]).items():
                if control == "reinit":  # The ticket's own mask.
                    np.testing.assert_array_equal(masks[key], mask)
                else:  # As many weights per tensor, elsewhere.
                    assert masks[key].sum() == mask.sum()
                    assert not np.array_equal(masks[key], mask)

    # Run again: every branch is done, so nothing trains.
    again = branches.run_branches(folder, build, train, seed=0, log=lambda _: None)
    assert len(trained) == 4 and again == found
    # A branch whose result is missing (killed before it finished) trains again.
    (
        folder
        / "branches"
        / "random"
        / branches.level_name(ticket.results[3])
        / "result.json"
    ).unlink()
    branches.run_branches(folder, build, train, seed=0, log=lambda _: None)
    assert trained[4:] == [f"random/{branches.level_name(ticket.results[3])}"]


def test_an_unknown_control_is_refused(imp_run):
    _, folder = imp_run
    with pytest.raises(ValueError, match="'shuffle'"):
        branches.run_branches(folder, build, None, controls=("shuffle",), seed=0)


def test_the_random_branch_of_a_unit_ticket_draws_whole_units(digits, tmp_path):
    model = build()
    ticket = lth.LotteryTicket(
        3, 1, prune_rate=0.5, granularity="unit", seed=0, verbose=0
    )
    fit(model, ticket, digits)
    level = branches.save_level(tmp_path, ticket, 2)
    assert json.loads((level / "level.json").read_text())["granularity"] == "unit"
    ticket_masks = ticket.masks_at(2)
    for control in ("random", "reinit"):
        drawn = lth.get_masks(branches.draw_branch(build(), level, control, seed=0))
        for key, mask in ticket_masks.items():
            assert is_unit_sparse(drawn[key], (1,)), (control, key)
            assert count_live_units(drawn[key], (1,)) == count_live_units(mask, (1,))
            if control == "reinit":
                np.testing.assert_array_equal(drawn[key], mask)
    # 32 hidden units halved twice: 8 live; the random draw picks others.
    assert count_live_units(ticket_masks["hidden/kernel"], (1,)) == 8
    random = lth.get_masks(branches.draw_branch(build(), level, "random", seed=0))
    assert not np.array_equal(random["hidden/kernel"], ticket_masks["hidden/kernel"])


def test_a_level_saved_before_granularity_draws_by_weight(imp_run):
    ticket, folder = imp_run
    level = folder / "levels" / branches.level_name(ticket.results[3])
    (level / "level.json").write_text(json.dumps(ticket.results[3]))
    drawn = lth.get_masks(branches.draw_branch(build(), level, "random", seed=0))
    assert not is_unit_sparse(drawn["hidden/kernel"], (1,))
