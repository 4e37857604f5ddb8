"""Any model made prunable: attention, recurrent and wrapped layers, subclassed
models and KerasHub backbones, copied or in place.

Each case is trained for IMP rounds, saved and loaded, and stripped, on every
backend (this module is in `CORE_MODULES`).
"""

import warnings

import keras
import numpy as np
import pytest
from keras import ops

import keras_lth
from keras_lth import LotteryTicket
from keras_lth import get_masks
from keras_lth import mask_model
from keras_lth import pruned_nonzero
from keras_lth import sparsity
from keras_lth import strip_masks
from keras_lth.layers import MaskedLayer


def hub():
    return pytest.importorskip("keras_hub", reason="keras-hub is not installed")


# --- The models ---------------------------------------------------------------


def transformer_block():
    """Embedding, MultiHeadAttention, LayerNorm and a feed-forward: Functional."""
    tokens = keras.Input((8,), dtype="int32")
    x = keras.layers.Embedding(40, 16)(tokens)
    attention = keras.layers.MultiHeadAttention(2, 8)(x, x)
    x = keras.layers.LayerNormalization()(x + attention)
    ff = keras.layers.Dense(32, activation="relu")(x)
    x = keras.layers.LayerNormalization()(x + keras.layers.Dense(16)(ff))
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(tokens, keras.layers.Dense(3)(x), name="transformer")


def recurrent_model():
    """Bidirectional LSTM, TimeDistributed Dense and GRU: Functional."""
    tokens = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(40, 8)(tokens)
    lstm = keras.layers.LSTM(8, return_sequences=True)
    x = keras.layers.Bidirectional(lstm)(x)
    x = keras.layers.TimeDistributed(keras.layers.Dense(8))(x)
    x = keras.layers.GRU(8)(x)
    return keras.Model(tokens, keras.layers.Dense(3)(x), name="recurrent")


@keras.saving.register_keras_serializable(package="keras_lth_tests")
class Mixer(keras.layers.Layer):
    """A custom layer with a kernel of its own and a stock sublayer."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.inner = keras.layers.Dense(units, name="inner")

    def build(self, input_shape):
        self.mix_kernel = self.add_weight(
            shape=(input_shape[-1], self.units), name="mix_kernel"
        )
        self.inner.build(input_shape)

    def call(self, inputs):
        return ops.relu(ops.matmul(inputs, self.mix_kernel) + self.inner(inputs))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="keras_lth_tests")
class Classifier(keras.Model):
    """A subclassed model: stock layers and a custom one."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = keras.layers.Embedding(40, 16, name="embed")
        self.pool = keras.layers.GlobalAveragePooling1D(name="pool")
        self.mixer = Mixer(32, name="mixer")
        self.out = keras.layers.Dense(3, name="out")

    def call(self, tokens):
        return self.out(self.mixer(self.pool(self.embed(tokens))))


def subclassed_model():
    model = Classifier(name="subclassed")
    model(np.zeros((1, 8), "int32"))
    return model


def bert_classifier():
    backbone = hub().models.BertBackbone(
        vocabulary_size=40,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    return hub().models.BertTextClassifier(backbone, num_classes=3, preprocessor=None)


def gpt2_classifier():
    backbone = hub().models.GPT2Backbone(
        vocabulary_size=40,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        intermediate_dim=32,
        max_sequence_length=8,
    )
    inputs = {
        name: keras.Input((8,), dtype="int32", name=name) for name in backbone.input
    }
    pooled = keras.layers.GlobalAveragePooling1D()(backbone(inputs))
    return keras.Model(inputs, keras.layers.Dense(3)(pooled), name="gpt2_classifier")


#: name -> (builder, masked in place?)
CASES = {
    "transformer": (transformer_block, False),
    "recurrent": (recurrent_model, False),
    "subclassed": (subclassed_model, True),
    "bert": (bert_classifier, True),
    "gpt2": (gpt2_classifier, True),
}


def inputs_for(model, batch=16, seed=0):
    rng = np.random.default_rng(seed)
    length = 6 if model.name == "recurrent" else 8
    tokens = rng.integers(1, 40, size=(batch, length)).astype("int32")
    names = getattr(model, "input_names", None) or []
    if isinstance(model, keras.Sequential) or not isinstance(
        getattr(model, "_inputs_struct", None), dict
    ):
        return tokens
    data = {"token_ids": tokens, "segment_ids": np.zeros_like(tokens)}
    data["padding_mask"] = np.ones_like(tokens)
    del names
    return {name: data[name] for name in model._inputs_struct}


def predict(model, x):
    return ops.convert_to_numpy(model(x, training=False))


@pytest.fixture(params=list(CASES))
def case(request):
    build, in_place = CASES[request.param]
    keras.utils.set_random_seed(0)
    model = build()
    x = inputs_for(model)
    before = predict(model, x)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", "`mask_model` could not make")
        masked = mask_model(model, in_place=in_place)
    return request.param, model, masked, in_place, x, before


# --- Tests --------------------------------------------------------------------


def test_every_kernel_is_prunable_and_outputs_are_unchanged(case):
    name, model, masked, in_place, x, before = case
    report = sparsity(masked)
    assert report["dense"] == {}
    assert 1 - report["dense_fraction"] >= 0.99
    assert len(report["layers"]) >= 4
    np.testing.assert_allclose(predict(masked, x), before, atol=1e-5)
    if in_place:
        assert masked is model and type(masked) is type(model)


def test_an_imp_round_prunes_and_pruned_weights_stay_zero(case):
    name, model, masked, in_place, x, before = case
    y = np.random.default_rng(1).integers(0, 3, size=16)
    masked.compile(
        keras.optimizers.Adam(1e-2),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    ticket = LotteryTicket(rounds=2, epochs_per_round=2, prune_rate=0.5, verbose=0)
    masked.fit(x, y, epochs=4, batch_size=8, callbacks=[ticket], verbose=0)
    report = sparsity(masked)
    assert report["global"] == pytest.approx(0.5, abs=0.02)
    # Every tensor is pruned, the output layer at half the rate.
    assert min(report["layers"].values()) == pytest.approx(0.25, abs=0.02)
    assert pruned_nonzero(masked) == {}
    # One more epoch, straight through the training step.
    masked.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert pruned_nonzero(masked) == {}


def random_masks(model, seed=2):
    rng = np.random.default_rng(seed)
    return {
        key: (rng.random(mask.shape) > 0.5).astype("float32")
        for key, mask in get_masks(model).items()
    }


def test_save_load_and_strip_keep_the_ticket(case, tmp_path):
    name, model, masked, in_place, x, before = case
    masks = random_masks(masked)
    keras_lth.set_masks(masked, masks)
    pruned = predict(masked, x)
    path = tmp_path / f"{name}.keras"
    keras_lth.save_model(masked, path)
    if in_place:
        loaded = keras_lth.load_model(path)
        assert type(loaded) is type(model)
    else:
        loaded = keras.saving.load_model(path)
    for key, mask in get_masks(loaded).items():
        np.testing.assert_array_equal(mask, masks[key], err_msg=key)
    np.testing.assert_allclose(predict(loaded, x), pruned, atol=1e-5)

    plain = strip_masks(masked, in_place=in_place)
    assert not any(isinstance(layer, MaskedLayer) for layer in _all_layers(plain))
    np.testing.assert_allclose(predict(plain, x), pruned, atol=1e-5)
    plain_path = tmp_path / f"{name}_plain.keras"
    keras_lth.save_model(plain, plain_path)
    again = keras.saving.load_model(plain_path)  # Stock layers: plain Keras.
    np.testing.assert_allclose(predict(again, x), pruned, atol=1e-5)


def _all_layers(model):
    return model._flatten_layers(include_self=False, recursive=True)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="LiteRT converts on TensorFlow"
)
def test_litert_export_where_the_converter_supports_the_model(case, tmp_path):
    pytest.importorskip("ai_edge_litert")
    name, model, masked, in_place, x, before = case
    keras_lth.set_masks(masked, random_masks(masked))
    path = tmp_path / f"{name}.tflite"
    sample = {k: v[:4] for k, v in x.items()} if isinstance(x, dict) else x[:4]
    if name == "recurrent":
        # The converter needs TensorFlow ops for Keras's RNN loop, masked or not.
        import tensorflow as tf

        with pytest.raises(Exception, match="TensorList"):
            tf.lite.TFLiteConverter.from_keras_model(recurrent_model()).convert()
        with pytest.raises(keras_lth.LiteRTExportError, match="cannot convert"):
            keras_lth.export_litert(masked, path, sample_inputs=sample)
        assert not path.exists()
        return
    report = keras_lth.export_litert(masked, path, sample_inputs=sample, latency_runs=0)
    assert path.exists()
    assert report.samples == 4
    assert all(
        error <= tolerance
        for error, tolerance in zip(report.output_errors, report.output_tolerances)
    )


def test_in_place_keeps_a_kerashub_model_its_class_and_methods():
    model = bert_classifier()
    masked = mask_model(model, in_place=True)
    assert type(masked) is hub().models.BertTextClassifier
    assert type(masked.backbone) is hub().models.BertBackbone
    assert masked.backbone.get_layer("token_embedding").embeddings_mask.shape == (
        40,
        16,
    )


def test_a_copy_of_a_kerashub_model_is_refused_with_the_way_out():
    backbone = bert_classifier().backbone
    with pytest.raises(ValueError, match=r"BertBackbone.*in_place=True"):
        mask_model(backbone)


def test_an_unbuilt_subclassed_model_is_refused_clearly():
    with pytest.raises(ValueError, match=r"'sub' is not built.*model\(x\[:1\]\)"):
        mask_model(Classifier(name="sub"), in_place=True)
