"""The settings of `keras-lth run`: defaults, choices, flags and their parsing.

Also the controls and the stages of a run.

Standard library only, so that the parser (`keras-lth --help`) imports no
Keras: the model and dataset names are written out here, and the tests check
them against `keras_lth.models.available()`, `keras_lth.datasets.NAMES`,
`keras_lth.branches.CONTROLS` and `keras_lth.branches.PAPER_LEVELS`.
"""

import dataclasses
import math

from keras_lth.cli._common import UsageError

__all__ = [
    "ADDED_SETTINGS",
    "CONTROLS",
    "DATASETS",
    "DEFAULT_CONTROLS",
    "DEFAULT_CONTROL_LEVELS",
    "DEFAULT_EPOCHS_PER_ROUND",
    "DEFAULT_MODEL",
    "DEFAULT_ROUNDS",
    "DEFAULT_SEED",
    "GRANULARITIES",
    "MODELS",
    "MONITORS",
    "SETTING_FLAGS",
    "Stage",
    "default_monitor",
    "parse_control_levels",
    "parse_controls",
    "parse_layer_rates",
    "show_setting",
    "stages",
]

#: `keras_lth.models.available()`: the reference networks with a preset.
MODELS = (
    "conv2",
    "conv4",
    "conv6",
    "lenet_300_100",
    "resnet20",
    "resnet20_warmup",
    "vgg19",
    "vgg19_warmup",
)

#: `keras_lth.datasets.NAMES`.
DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")

#: `keras_lth.structured.GRANULARITIES`: what IMP prunes, weights or units.
GRANULARITIES = ("weight", "unit")

DEFAULT_MODEL = "lenet_300_100"
#: 19 rounds reach the paper's sparsest level for LeNet, 1.9% (2.1%); with 20
#: epochs a round and both controls, the default run trains 580 epochs on
#: digits, about 2 minutes of CPU.
DEFAULT_ROUNDS = 19
DEFAULT_EPOCHS_PER_ROUND = 20
DEFAULT_SEED = 0
DEFAULT_CONTROLS = ("reinit", "random")

#: What marks a round's early-stopping epoch: the first epoch where it is best.
#: The paper's is the lowest validation loss. On digits that loss keeps
#: falling for 100 epochs and more, so the best epoch would always be the
#: last; the first epoch at the best validation accuracy is the default there.
MONITORS = ("val_loss", "val_accuracy")

#: `keras_lth.branches.CONTROLS`: control name -> its label in tables and plots.
#: Each trains once from every level of the IMP run (a branch).
CONTROLS = {"reinit": "random reinit", "random": "random pruning"}

#: `keras_lth.branches.PAPER_LEVELS` in percent: the weights remaining where
#: Frankle & Carbin report LeNet-300-100's controls (Figure 4).
DEFAULT_CONTROL_LEVELS = (51.3, 21.1, 7.0, 3.6, 1.9)

#: The settings of a run, as `run.json` holds them, and their flags.
SETTING_FLAGS = {
    "model": "--model",
    "dataset": "--dataset",
    "data_path": "--data-path",
    "batch_size": "--batch-size",
    "rounds": "--rounds",
    "epochs_per_round": "--epochs-per-round",
    "prune_rate": "--prune-rate",
    "layer_rates": "--layer-rate",
    "strategy": "--strategy",
    "granularity": "--granularity",
    "refill": "--refill",
    "rewind": "--rewind",
    "monitor": "--monitor",
    "controls": "--controls",
    "control_levels": "--control-levels",
    "seed": "--seed",
}

#: Settings newer than `run.json`'s version 2, with the value of a run
#: written before them.
ADDED_SETTINGS = {"granularity": "weight", "refill": False}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One stage of a run: the IMP run, or a control's branches off its levels.

    Attributes:
        name: `"imp"` or the control's name.
        label: How tables and plots name it.
    """

    name: str
    label: str

    @property
    def results_json(self):
        return "results.json" if self.name == "imp" else f"results_{self.name}.json"

    @property
    def results_csv(self):
        return self.results_json[: -len(".json")] + ".csv"

    @property
    def title(self):
        return "IMP" if self.name == "imp" else f"Control: {self.label}"


def default_monitor(dataset):
    """The `--monitor` of a run on `dataset` when none is given (see `MONITORS`)."""
    return "val_accuracy" if dataset == "digits" else "val_loss"


def stages(settings):
    """The stages of a run with these settings: IMP, then each control."""
    return [
        Stage("imp", "IMP"),
        *(Stage(name, CONTROLS[name]) for name in settings["controls"]),
    ]


def show_setting(key, value):
    """A setting as its flag spells it, for messages."""
    if key == "layer_rates":
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if key == "controls":
        return ",".join(value) or "none"
    if key == "control_levels":
        return ",".join(map(str, value))
    if key == "refill":
        return "on" if value else "off"
    return str(value)


def parse_controls(text):
    """The `--controls` list as `run.json` holds it.

    Args:
        text: The flag's value, such as `"reinit,random"` or `"none"`.

    Returns:
        The control names, unique, in the order given; `[]` for `"none"`.

    Raises:
        UsageError: For a name not in `CONTROLS`, or `none` with others.
    """
    names = [name.strip() for name in text.split(",") if name.strip()]
    choices = [*CONTROLS, "none"]
    unknown = [name for name in names if name not in choices]
    if not names or unknown:
        raise UsageError(
            f"--controls {text!r}: expected a comma-separated list of "
            f"{', '.join(choices)}"
        )
    if "none" in names:
        if len(names) > 1:
            raise UsageError(f"--controls {text!r}: 'none' cannot be combined")
        return []
    return list(dict.fromkeys(names))  # Unique, in order.


def parse_control_levels(text):
    """The `--control-levels` list as `run.json` holds it.

    Args:
        text: The flag's value, percentages of weights remaining such as
            `"51.3,21.1,7"` (a `%` after a number is allowed).

    Returns:
        The percentages as floats, unique, from the densest level down.

    Raises:
        UsageError: For a value that is not a number in (0, 100].
    """
    levels = []
    for item in text.split(","):
        try:
            level = float(item.strip().removesuffix("%"))
        except ValueError:
            level = math.nan
        if not 0 < level <= 100:  # NaN fails too.
            raise UsageError(
                f"--control-levels {text!r}: expected comma-separated "
                "percentages of weights remaining, each in (0, 100], such as "
                f"{','.join(map(str, DEFAULT_CONTROL_LEVELS))}"
            )
        levels.append(level)
    return sorted(set(levels), reverse=True)


def parse_layer_rates(items):
    """The `--layer-rate` values as `{layer: rate}`.

    Args:
        items: The flag's values, each `LAYER=RATE`.

    Returns:
        The rates, as given (`LotteryTicket` checks their range).

    Raises:
        UsageError: For an item that is not `LAYER=RATE` with a number.
    """
    rates = {}
    for item in items:
        name, sep, rate = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            rates[name.strip()] = float(rate)
        except ValueError:
            raise UsageError(
                f"--layer-rate {item!r}: expected LAYER=RATE, such as output=0.1"
            ) from None
    return rates
