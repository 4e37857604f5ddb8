"""The reference networks of Frankle & Carbin (2019), with their training presets.

Builders for the six networks of the paper's Figure 2, ready for
`keras_lth.LotteryTicket` (`masked=True`, the default, builds them from the
masked layers of `keras_lth.layers`), and one `Preset` per network with the
paper's optimizer, batch size, iterations and pruning rates:

>>> preset = get_preset("lenet_300_100")
>>> model = preset.build_model()
>>> model.compile(optimizer=preset.make_optimizer(),
...               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
>>> ticket = keras_lth.LotteryTicket(rounds=8, epochs_per_round=5,
...                                  **preset.ticket_kwargs())

* `keras_lth.models.architectures`: the builders, `lenet_300_100`, `conv2`,
  `conv4`, `conv6`, `vgg19` and `resnet20`.
* `keras_lth.models.presets`: `Preset`, `get_preset`, `available` and
  `PRESETS`.
* `keras_lth.models.learning_rate`: `WarmupStepDecay`, the learning-rate
  schedule of the SGD presets.

Reference: J. Frankle and M. Carbin, "The Lottery Ticket Hypothesis: Finding
Sparse, Trainable Neural Networks", ICLR 2019 (arXiv:1803.03635v5).
"""

from keras_lth.models.architectures import conv2
from keras_lth.models.architectures import conv4
from keras_lth.models.architectures import conv6
from keras_lth.models.architectures import lenet_300_100
from keras_lth.models.architectures import resnet20
from keras_lth.models.architectures import vgg19
from keras_lth.models.learning_rate import WarmupStepDecay
from keras_lth.models.presets import PRESETS
from keras_lth.models.presets import Preset
from keras_lth.models.presets import available
from keras_lth.models.presets import get_preset

__all__ = [
    "PRESETS",
    "Preset",
    "WarmupStepDecay",
    "available",
    "conv2",
    "conv4",
    "conv6",
    "get_preset",
    "lenet_300_100",
    "resnet20",
    "vgg19",
]
