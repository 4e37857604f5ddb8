"""The settings of `keras-lth run`: defaults, choices, flags, controls, stages.

Standard library only, so that the parser (`keras-lth --help`) imports no
Keras: the model and dataset names are written out here, and the tests check
them against `keras_lth.models.available()` and `keras_lth.datasets.NAMES`.
"""

import dataclasses

__all__ = [
    "CONTROLS",
    "DATASETS",
    "DEFAULT_CONTROLS",
    "DEFAULT_EPOCHS_PER_ROUND",
    "DEFAULT_MODEL",
    "DEFAULT_ROUNDS",
    "DEFAULT_SEED",
    "MODELS",
    "SETTING_FLAGS",
    "Stage",
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

DEFAULT_MODEL = "lenet_300_100"
DEFAULT_ROUNDS = 8
DEFAULT_EPOCHS_PER_ROUND = 10
DEFAULT_SEED = 0
DEFAULT_CONTROLS = ("reinit",)

#: Control name -> (label in tables and plots, what it changes in IMP).
CONTROLS = {
    "reinit": ("random reinit", {"rewind": "reinit"}),
    "random": ("random pruning", {"strategy": "random"}),
}

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
    "rewind": "--rewind",
    "controls": "--controls",
    "seed": "--seed",
}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One `LotteryTicket` fit of a run: IMP or a control.

    Attributes:
        name: `"imp"` or the control's name.
        label: How tables and plots name it.
        changes: The `LotteryTicket` arguments it changes from IMP's.
    """

    name: str
    label: str
    changes: dict

    @property
    def results_json(self):
        return "results.json" if self.name == "imp" else f"results_{self.name}.json"

    @property
    def results_csv(self):
        return self.results_json[: -len(".json")] + ".csv"

    @property
    def title(self):
        return "IMP" if self.name == "imp" else f"Control: {self.label}"


def stages(settings):
    """The stages of a run with these settings: IMP, then each control."""
    found = [Stage("imp", "IMP", {})]
    for name in settings["controls"]:
        label, changes = CONTROLS[name]
        found.append(Stage(name, label, changes))
    return found


def show_setting(key, value):
    """A setting as its flag spells it, for messages."""
    if key == "layer_rates":
        return ",".join(f"{k}={v}" for k, v in value.items()) or "(none)"
    if key == "controls":
        return ",".join(value) or "none"
    return str(value)
