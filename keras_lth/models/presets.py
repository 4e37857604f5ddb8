"""The paper's training and pruning settings for each reference network.

`get_preset(name)` returns a `Preset`: the network's builder with the
optimizer, batch size, iterations and pruning rates of Frankle & Carbin
(2019), Figure 2 and Appendices H-I.
"""

import dataclasses
import math
import types
from collections.abc import Callable
from collections.abc import Mapping

import keras

from keras_lth._checks import check_choice
from keras_lth._checks import check_count
from keras_lth.models.architectures import conv2
from keras_lth.models.architectures import conv4
from keras_lth.models.architectures import conv6
from keras_lth.models.architectures import lenet_300_100
from keras_lth.models.architectures import resnet20
from keras_lth.models.architectures import vgg19
from keras_lth.models.learning_rate import WarmupStepDecay
from keras_lth.pruning import check_strategy

__all__ = ["PRESETS", "Preset", "available", "get_preset"]

_OPTIMIZERS = ("adam", "sgd")


@dataclasses.dataclass(frozen=True)
class Preset:
    """A reference network with the paper's training and pruning settings.

    Get one with `get_preset(name)`; change a field with
    `dataclasses.replace(preset, learning_rate=0.01)`.

    Attributes:
        name: The preset's name, as listed by `available()`.
        build: The model builder, such as `lenet_300_100`.
        optimizer: `"adam"` or `"sgd"`.
        learning_rate: Initial learning rate (after warmup, if any).
        batch_size: Examples per optimizer step.
        iterations: Optimizer steps per training run (per IMP round).
        strategy: Pruning strategy for `LotteryTicket`: `"layerwise"` or
            `"global"`.
        prune_rate: Fraction of the surviving weights pruned per round.
        layer_rates: Read-only `{layer_name: rate}` overriding `prune_rate`
            (with `"global"`, only `0`: layers kept out of pruning).
        momentum: SGD momentum. 0 for Adam.
        weight_decay: Weight decay passed to the Keras optimizer. 0 if none.
        lr_boundaries: Steps at which the learning rate is multiplied by
            `lr_decay`.
        lr_decay: Factor of each learning-rate drop.
        warmup_steps: Steps of linear learning-rate warmup from 0.
        dataset: The dataset the paper trains it on (`keras_lth.datasets`).
        reference: Where in the paper the settings come from.

    Example:

    >>> preset = get_preset("lenet_300_100")
    >>> preset.optimizer, preset.batch_size, preset.ticket_kwargs()["strategy"]
    ('adam', 60, 'layerwise')
    """

    name: str
    build: Callable[..., keras.Model]
    optimizer: str
    learning_rate: float
    batch_size: int
    iterations: int
    strategy: str
    prune_rate: float
    # Left out of the hash: a mapping is not hashable.
    layer_rates: Mapping[str, float] = dataclasses.field(
        default_factory=dict, hash=False
    )
    momentum: float = 0.0
    weight_decay: float = 0.0
    lr_boundaries: tuple[int, ...] = ()
    lr_decay: float = 0.1
    warmup_steps: int = 0
    dataset: str = ""
    reference: str = ""

    def __post_init__(self):
        check_choice(self.optimizer, "optimizer", _OPTIMIZERS)
        check_strategy(self.strategy)
        # Read-only, so that a preset from `get_preset` cannot be changed
        # in place for everyone else.
        object.__setattr__(
            self, "layer_rates", types.MappingProxyType(dict(self.layer_rates))
        )
        object.__setattr__(self, "lr_boundaries", tuple(self.lr_boundaries))

    def build_model(self, **kwargs) -> keras.Model:
        """Builds the network: `self.build(**kwargs)`.

        Args:
            **kwargs: Passed to the builder: `input_shape`, `num_classes`,
                `masked`.

        Returns:
            A new, uncompiled model.
        """
        return self.build(**kwargs)

    def learning_rate_schedule(self) -> float | WarmupStepDecay:
        """The learning rate: a float, or a `WarmupStepDecay` if it changes."""
        if not self.lr_boundaries and not self.warmup_steps:
            return self.learning_rate
        return WarmupStepDecay(
            self.learning_rate,
            boundaries=self.lr_boundaries,
            decay=self.lr_decay,
            warmup_steps=self.warmup_steps,
        )

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """Returns a new Keras optimizer with the preset's settings.

        A fresh instance on every call, since a Keras optimizer belongs to
        one model. Weight decay is Keras' (`w -= lr * weight_decay * w` at
        each step, decoupled from the gradient), which for SGD with momentum
        differs slightly from the L2 term of the paper's implementation.
        """
        learning_rate = self.learning_rate_schedule()
        weight_decay = self.weight_decay or None
        if self.optimizer == "adam":
            return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)
        return keras.optimizers.SGD(
            learning_rate, momentum=self.momentum, weight_decay=weight_decay
        )

    def ticket_kwargs(self) -> dict:
        """Keyword arguments for `keras_lth.LotteryTicket`.

        Returns:
            `{"prune_rate": ..., "strategy": ..., "layer_rates": {...}}`, with
            `layer_rates` keyed by the names of the layers `build` creates.

        Example:

        ```python
        ticket = keras_lth.LotteryTicket(rounds=8, epochs_per_round=5,
                                         **preset.ticket_kwargs())
        ```
        """
        return {
            "prune_rate": self.prune_rate,
            "strategy": self.strategy,
            "layer_rates": dict(self.layer_rates),
        }

    def epochs(self, num_train_examples: int) -> int:
        """Epochs that cover `iterations` steps at `batch_size`.

        `ceil(iterations / steps_per_epoch)`, with
        `steps_per_epoch = ceil(num_train_examples / batch_size)` (as
        `model.fit` counts them). Use it for `epochs_per_round`.

        Args:
            num_train_examples: Size of the training set.

        Returns:
            The number of epochs, at least 1.
        """
        num_train_examples = check_count(num_train_examples, "num_train_examples")
        steps_per_epoch = math.ceil(num_train_examples / self.batch_size)
        return max(1, math.ceil(self.iterations / steps_per_epoch))


# Conv-2/4/6: the convolutions and the output layer have their own rates; the
# hidden dense layers ("fc1", "fc2") are pruned at `prune_rate`.
def _conv_rates(num_convs, conv_rate):
    rates = {f"conv{i}": conv_rate for i in range(1, num_convs + 1)}
    rates["output"] = 0.1
    return rates


# VGG-19 on CIFAR-10 with the paper's batch size 64: 703 steps per epoch on
# 45,000 training examples, 160 epochs = 112,480 iterations (Appendix I.2).
_VGG_STEPS_PER_EPOCH = 703

_VGG19 = dict(
    name="vgg19",
    build=vgg19,
    optimizer="sgd",
    learning_rate=0.1,
    batch_size=64,
    iterations=160 * _VGG_STEPS_PER_EPOCH,
    strategy="global",
    prune_rate=0.2,
    layer_rates={"output": 0.0},
    momentum=0.9,
    weight_decay=1e-4,
    lr_boundaries=(80 * _VGG_STEPS_PER_EPOCH, 120 * _VGG_STEPS_PER_EPOCH),
    dataset="cifar10",
    reference=(
        "Figure 2; Section 4; Appendix I.2: batch 64, 160 epochs (112,480 "
        "iterations), SGD momentum 0.9, lr 0.1 divided by 10 after 80 and 120 "
        "epochs, weight decay 1e-4, convolutions pruned globally at 20%, the "
        "5,120 output weights not pruned"
    ),
)

_RESNET20 = dict(
    name="resnet20",
    build=resnet20,
    optimizer="sgd",
    learning_rate=0.1,
    batch_size=128,
    iterations=30_000,
    strategy="global",
    prune_rate=0.2,
    layer_rates={
        "stage2_block1_shortcut_conv": 0.0,
        "stage3_block1_shortcut_conv": 0.0,
        "output": 0.0,
    },
    momentum=0.9,
    weight_decay=1e-4,
    lr_boundaries=(20_000, 25_000),
    dataset="cifar10",
    reference=(
        'Figure 2 ("Resnet-18"); Section 4; Appendix I.3: batch 128, 30,000 '
        "iterations, SGD momentum 0.9, lr 0.1 divided by 10 at 20,000 and "
        "25,000 iterations, weight decay 1e-4, convolutions pruned globally at "
        "20%, the 2,560 shortcut weights and 640 output weights not pruned"
    ),
)

_PRESET_LIST = (
    Preset(
        name="lenet_300_100",
        build=lenet_300_100,
        optimizer="adam",
        learning_rate=1.2e-3,
        batch_size=60,
        iterations=50_000,
        strategy="layerwise",
        prune_rate=0.2,
        layer_rates={"output": 0.1},
        dataset="mnist",
        reference=(
            "Figure 2 and Section 2: Adam 1.2e-3, 50K iterations, batch 60, "
            "fc layers pruned at 20% per round, the output layer at half that"
        ),
    ),
    Preset(
        name="conv2",
        build=conv2,
        optimizer="adam",
        learning_rate=2e-4,
        batch_size=60,
        iterations=20_000,
        strategy="layerwise",
        prune_rate=0.2,
        layer_rates=_conv_rates(2, 0.1),
        dataset="cifar10",
        reference=(
            "Figure 2: Adam 2e-4, 20K iterations, batch 60, conv 10% fc 20%; "
            "output layer 10% as in Appendix H.2"
        ),
    ),
    Preset(
        name="conv4",
        build=conv4,
        optimizer="adam",
        learning_rate=3e-4,
        batch_size=60,
        iterations=25_000,
        strategy="layerwise",
        prune_rate=0.2,
        layer_rates=_conv_rates(4, 0.1),
        dataset="cifar10",
        reference=(
            "Figure 2: Adam 3e-4, 25K iterations, batch 60, conv 10% fc 20%; "
            "output layer 10% as in Appendix H.2"
        ),
    ),
    Preset(
        name="conv6",
        build=conv6,
        optimizer="adam",
        learning_rate=3e-4,
        batch_size=60,
        iterations=30_000,
        strategy="layerwise",
        prune_rate=0.2,
        layer_rates=_conv_rates(6, 0.15),
        dataset="cifar10",
        reference=(
            "Figure 2: Adam 3e-4, 30K iterations, batch 60, conv 15% fc 20%; "
            "output layer 10% as in Appendix H.2"
        ),
    ),
    Preset(**_VGG19),
    Preset(
        **{
            **_VGG19,
            "name": "vgg19_warmup",
            "warmup_steps": 10_000,
            "reference": (
                "Section 4 and Appendix I.5: as vgg19, with linear warmup of "
                "the learning rate from 0 to 0.1 over k = 10,000 iterations, "
                "with which the paper finds winning tickets at lr 0.1"
            ),
        }
    ),
    Preset(**_RESNET20),
    Preset(
        **{
            **_RESNET20,
            "name": "resnet20_warmup",
            "learning_rate": 0.03,
            "warmup_steps": 20_000,
            "reference": (
                "Section 4 and Appendix I.5: as resnet20, with lr 0.03 reached "
                "by linear warmup over k = 20,000 iterations, with which the "
                "paper finds winning tickets (at lr 0.1 it finds none); the "
                "warmup ends where the first drop, at 20,000, begins"
            ),
        }
    ),
)

#: Read-only `{name: Preset}` of every preset.
PRESETS: Mapping[str, Preset] = types.MappingProxyType(
    {preset.name: preset for preset in _PRESET_LIST}
)


def available() -> list[str]:
    """Returns the names of the presets, sorted."""
    return sorted(PRESETS)


def get_preset(name: str) -> Preset:
    """Returns the preset of a reference network, with the paper's settings.

    | preset            | optimizer            | batch | steps   | pruned per round   |
    | ----------------- | -------------------- | ----- | ------- | ------------------ |
    | `lenet_300_100`   | Adam 1.2e-3          | 60    | 50,000  | fc 20%, out 10%    |
    | `conv2`           | Adam 2e-4            | 60    | 20,000  | conv 10%, fc 20%   |
    | `conv4`           | Adam 3e-4            | 60    | 25,000  | conv 10%, fc 20%   |
    | `conv6`           | Adam 3e-4            | 60    | 30,000  | conv 15%, fc 20%   |
    | `vgg19`           | SGD 0.1              | 64    | 112,480 | global 20%         |
    | `vgg19_warmup`    | SGD 0.1, warmup 10k  | 64    | 112,480 | global 20%         |
    | `resnet20`        | SGD 0.1              | 128   | 30,000  | global 20%         |
    | `resnet20_warmup` | SGD 0.03, warmup 20k | 128   | 30,000  | global 20%         |

    All from Frankle & Carbin (2019), Figure 2 and Appendices H-I; each
    preset's `reference` says where. Conv-2/4/6 prune their output layer at
    10%. The SGD presets use momentum 0.9 and
    weight decay 1e-4, divide the learning rate by 10 twice
    (`lr_boundaries`), and prune the convolutions globally, keeping the
    output layer (and ResNet's shortcut convolutions) dense, as the paper
    does.

    Args:
        name: One of `available()`.

    Returns:
        The `Preset`.
    """
    if name not in PRESETS:
        raise ValueError(
            f"Unknown preset {name!r}. Expected one of: {', '.join(available())}"
        )
    return PRESETS[name]
