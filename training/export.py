"""Atomic, versioned export into the model repository: `models/<name>/<version>/`, TF Serving's layout.

Everything is written into a temporary folder beside the versions and renamed into place only when complete,
so an interrupted or failed run never leaves a version that a server could load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from models import digit_check
from models.contract import (
    CARD_FILE,
    DIGIT_CHECK_SIGNATURE,
    EXTRA_FOLDER,
    FEATURE_MAPS_SIGNATURE,
    INPUT_NAME,
    LITERT_PATH,
    ONNX_PATH,
    OUTPUT_NAME,
    SCORE_NAME,
    SIGNATURE_NAME,
    TEMPORARY_PREFIX,
    version_numbers,
)
from training.card import ConvertedModel, ModelCard
from training.plots import write_confusion_matrix, write_reliability_diagram, write_report, write_training_curves

# The converted models are checked against the SavedModel in batches this large.
CHECK_BATCH = 256
# A function that runs a converted model on a float32 batch (n, 28, 28, 1) of any size.
Runner = Callable[[np.ndarray], np.ndarray]


class ExportError(Exception):
    """The export could not be done; nothing was left behind in the repository."""


@dataclass(frozen=True)
class ServingHead:
    """What the served signatures put on top of the model's logits: softmax(logits / temperature) as the
    probabilities, and a `digit_check` signature adding the raw `score` (models/digit_check.py)."""

    temperature: float
    score: str

    def outputs(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        """What the signatures must answer for these logits, computed in numpy (the export's check)."""
        return {
            OUTPUT_NAME: digit_check.softmax(logits, self.temperature),
            SCORE_NAME: digit_check.raw_score(self.score, logits, self.temperature),
        }


def choose_version(model_folder: Path, pinned: int | None, *, force: bool) -> int:
    """The next free version, or the pinned one (which may replace an existing version only with `force`)."""
    versions = version_numbers(model_folder)
    if pinned is None:
        return (versions[-1] + 1) if versions else 1
    if pinned < 1:
        raise ExportError(f"--version must be a positive integer, got {pinned}")
    if pinned in versions and not force:
        raise ExportError(f"{model_folder / str(pinned)} already exists; pass --force to replace it, or omit --version")
    return pinned


def export_version(
    model: keras.Model,
    card: ModelCard,
    model_folder: Path,
    *,
    test_images: np.ndarray,
    force: bool = False,
    before_publish: Callable[[Path], None] | None = None,
    to_litert: Callable[[Path], bytes] | None = None,
    to_onnx: Callable[[Path], bytes] | None = None,
    head: ServingHead | None = None,
) -> Path:
    """Write the SavedModel (with its `feature_maps` signature), its LiteRT and ONNX copies (each checked against
    it on `test_images`, uint8 (n, 28, 28)), the Keras file, the card and its plots, then publish them as version
    `card.version`.

    `before_publish` is called on the complete temporary folder just before the rename (tests use it to fail
    an export midway); `to_litert` and `to_onnx` convert a SavedModel folder to a LiteRT flatbuffer and to an
    ONNX model (tests pass wrong ones). With a `head`, the probabilities are calibrated and a `digit_check`
    signature is added; the converted models are that signature (probabilities and score).
    """
    model_folder.mkdir(parents=True, exist_ok=True)
    final = model_folder / str(card.version)
    if final.exists() and not force:
        raise ExportError(f"{final} already exists; pass --force to replace it")
    staging = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{card.version}-", dir=model_folder))
    staging.chmod(0o777 & ~_current_umask())  # mkdtemp makes it private; servers running as other users read it.
    try:
        layers = write_saved_model(model, staging, head)
        check_saved_model(model, staging, layers, head)
        extra = staging / EXTRA_FOLDER
        extra.mkdir()
        signature = DIGIT_CHECK_SIGNATURE if head else SIGNATURE_NAME
        litert = write_converted(
            staging,
            test_images,
            "LiteRT",
            LITERT_PATH,
            to_litert or (lambda folder: convert_to_litert(folder, signature)),
            lambda flatbuffer: litert_runner(flatbuffer, signature),
            signature,
        )
        onnx = write_converted(
            staging,
            test_images,
            "ONNX",
            ONNX_PATH,
            to_onnx or (lambda folder: convert_to_onnx(folder, signature)),
            onnx_runner,
            signature,
        )
        card = card.model_copy(update={"litert": litert, "onnx": onnx, "feature_maps": layers})
        model.save(extra / "model.keras")
        (extra / CARD_FILE).write_text(card.model_dump_json(indent=2) + "\n")
        write_training_curves(card, extra / "training_curves.png")
        write_confusion_matrix(card, extra / "confusion_matrix.png")
        if card.calibration is not None:
            write_reliability_diagram(card, staging / card.calibration.reliability_diagram)
        write_report(card, extra / "report.md")
        if before_publish:
            before_publish(staging)
        _publish(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return final


def feature_map_layers(model: keras.Model) -> list[str]:
    """The layers whose outputs are feature maps: the convolutions and the poolings, in order."""
    return [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D | keras.layers.MaxPooling2D)]


def write_saved_model(model: keras.Model, folder: Path, head: ServingHead | None = None) -> list[str]:
    """A SavedModel whose `serving_default` maps `image` [-1,28,28,1] float32 to `probabilities` [-1,10], and
    whose `feature_maps` signature maps the same input to each convolution's and pooling's output, by layer name
    (TF Serving and the service both serve several signatures). With a `head`, the probabilities are
    softmax(logits / T), and a `digit_check` signature returns them with the raw `score` [-1]. Returns the
    feature-map layer names."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    layers = feature_map_layers(model)
    maps = keras.Model(model.inputs, [model.get_layer(name).output for name in layers])
    archive.track(maps)
    image_spec = [tf.TensorSpec(shape=(None, 28, 28, 1), dtype=tf.float32, name=INPUT_NAME)]

    def feature_maps(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(zip(layers, maps(image, training=False), strict=True))

    if head is None:

        def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
            return {OUTPUT_NAME: model(image, training=False)}

    else:
        classifier = model.layers[-1]  # Dense(10, softmax): its logits are features @ kernel + bias
        features = keras.Model(model.inputs, classifier.input)
        archive.track(features)

        def scaled_logits(image: tf.Tensor) -> tf.Tensor:
            logits = tf.matmul(features(image, training=False), classifier.kernel) + classifier.bias
            return logits / head.temperature

        def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
            return {OUTPUT_NAME: tf.nn.softmax(scaled_logits(image))}

        def check(image: tf.Tensor) -> dict[str, tf.Tensor]:
            scaled = scaled_logits(image)
            probabilities = tf.nn.softmax(scaled)
            if head.score == "msp":
                score = tf.reduce_max(probabilities, axis=1)
            else:
                score = head.temperature * tf.reduce_logsumexp(scaled, axis=1)
            return {OUTPUT_NAME: probabilities, SCORE_NAME: score}

        archive.add_endpoint(name=DIGIT_CHECK_SIGNATURE, fn=check, input_signature=image_spec)

    archive.add_endpoint(name=SIGNATURE_NAME, fn=serve, input_signature=image_spec)
    archive.add_endpoint(name=FEATURE_MAPS_SIGNATURE, fn=feature_maps, input_signature=image_spec)
    archive.write_out(str(folder), verbose=False)
    return layers


def model_logits(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The logits under the model's final softmax, for float32 images (n, 28, 28, 1)."""
    classifier = model.layers[-1]
    features = keras.Model(model.inputs, classifier.input)
    kernel, bias = (keras.ops.convert_to_numpy(weight) for weight in classifier.weights)
    return np.asarray(features.predict(images, batch_size=512, verbose=0)) @ kernel + bias


def check_saved_model(
    model: keras.Model, folder: Path, layers: list[str], head: ServingHead | None = None, tolerance: float = 1e-5
) -> None:
    """Reload the SavedModel as a server would and check it gives the Keras model's probabilities (calibrated by
    the head's temperature, with its score, when there is a head), and each layer's output under `feature_maps`."""
    loaded = tf.saved_model.load(str(folder))
    probe = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    served = loaded.signatures[SIGNATURE_NAME](**{INPUT_NAME: tf.constant(probe)})[OUTPUT_NAME].numpy()
    if head is None:
        expected = {OUTPUT_NAME: keras.ops.convert_to_numpy(model(probe, training=False))}
        answers = {OUTPUT_NAME: served}
    else:
        expected = head.outputs(model_logits(model, probe))
        checked = loaded.signatures[DIGIT_CHECK_SIGNATURE](**{INPUT_NAME: tf.constant(probe)})
        answers = {name: checked[name].numpy() for name in expected}
        answers["served"] = served
        expected["served"] = expected[OUTPUT_NAME]
    for name, values in expected.items():
        difference = float(np.max(np.abs(answers[name] - values) / np.maximum(1.0, np.abs(values))))
        if difference > tolerance:
            raise ExportError(f"the exported SavedModel's {name} disagrees with the Keras model by {difference:.2e}")
    maps = loaded.signatures[FEATURE_MAPS_SIGNATURE](**{INPUT_NAME: tf.constant(probe)})
    if sorted(maps) != sorted(layers):
        raise ExportError(f"the feature_maps signature returns {sorted(maps)}; expected {sorted(layers)}")
    for name in layers:
        shape = model.get_layer(name).output.shape
        if list(maps[name].shape[1:]) != list(shape[1:]):
            raise ExportError(f"feature map {name} has shape {maps[name].shape}; the layer's is {shape}")


def convert_to_litert(saved_model_folder: Path, signature: str = SIGNATURE_NAME) -> bytes:
    """One of the SavedModel's signatures (the serving one by default) as a LiteRT (TFLite) flatbuffer."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_folder), signature_keys=[signature])
    return bytes(converter.convert())


def convert_to_onnx(saved_model_folder: Path, signature: str = SIGNATURE_NAME) -> bytes:
    """One of the SavedModel's signatures (the serving one by default) as an ONNX model (tf2onnx), with the same
    input and output names."""
    import tf2onnx

    loaded = tf.saved_model.load(str(saved_model_folder))  # kept referenced: the signature uses its variables

    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return dict(loaded.signatures[signature](**{INPUT_NAME: image}))

    model_proto, _ = tf2onnx.convert.from_function(
        tf.function(serve),
        input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32, name=INPUT_NAME)],
        opset=17,
    )
    return bytes(model_proto.SerializeToString())


def write_converted(
    folder: Path,
    test_images: np.ndarray,
    what: str,
    path: Path,
    convert: Callable[[Path], bytes],
    runner: Callable[[bytes], Runner],
    signature_name: str = SIGNATURE_NAME,
    tolerance: float = 1e-5,
) -> ConvertedModel:
    """Convert the SavedModel's signature in `folder` for another runtime and keep the result (at `path` in the
    folder) only if it agrees with the SavedModel on every test image: every output within `tolerance` (relative,
    for scores above 1), the same digit. ExportError otherwise."""
    converted_model = convert(folder)
    signature = tf.saved_model.load(str(folder)).signatures[signature_name]
    run = runner(converted_model)
    pixels = (test_images.astype(np.float32) / 255)[..., np.newaxis]
    difference = 0.0
    for start in range(0, len(pixels), CHECK_BATCH):
        batch = pixels[start : start + CHECK_BATCH]
        outputs = signature(**{INPUT_NAME: tf.constant(batch)})
        expected = np.concatenate([outputs[name].numpy().reshape(len(batch), -1) for name in sorted(outputs)], axis=1)
        converted = run(batch)
        if converted.shape != expected.shape:
            raise ExportError(f"the {what} model answers {converted.shape}; the SavedModel {expected.shape}")
        relative = np.abs(expected - converted) / np.maximum(1.0, np.abs(expected))
        difference = max(difference, float(np.max(relative)))
        disagreeing = int(np.count_nonzero(expected[:, :10].argmax(axis=1) != converted[:, :10].argmax(axis=1)))
        if disagreeing or difference > tolerance:
            raise ExportError(
                f"the {what} model disagrees with the SavedModel (max difference {difference:.1e}, "
                f"{disagreeing} different digits in test images {start}-{start + len(batch) - 1}); not exported"
            )
    (folder / path).write_bytes(converted_model)
    return ConvertedModel(
        file=str(path),
        sha256=hashlib.sha256(converted_model).hexdigest(),
        max_difference=difference,
        checked_images=len(pixels),
    )


def onnx_runner(model: bytes) -> Runner:
    """A function running the ONNX model on a float32 batch of any size (ONNX Runtime, on the CPU)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])

    names = sorted(output.name for output in session.get_outputs())

    def run(batch: np.ndarray) -> np.ndarray:
        outputs = session.run(names, {INPUT_NAME: batch})
        return np.concatenate([np.asarray(output).reshape(len(batch), -1) for output in outputs], axis=1)

    return run


def litert_runner(flatbuffer: bytes, signature: str = SIGNATURE_NAME) -> Runner:
    """A function running the flatbuffer's signature on a float32 batch of any size: its outputs, by name,
    side by side (probabilities, then score)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # TensorFlow's own interpreter does the same
        Interpreter = tf.lite.Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    runner = interpreter.get_signature_runner(signature)
    input_index = runner.get_input_details()[INPUT_NAME]["index"]
    sizes: dict[str, int] = {"batch": 0}

    def run(batch: np.ndarray) -> np.ndarray:
        if sizes["batch"] != len(batch):
            interpreter.resize_tensor_input(input_index, list(batch.shape), strict=False)
            interpreter.allocate_tensors()
            sizes["batch"] = len(batch)
        outputs = interpreter.get_signature_runner(signature)(**{INPUT_NAME: batch})
        return np.concatenate([np.asarray(outputs[name]).reshape(len(batch), -1) for name in sorted(outputs)], axis=1)

    return run


def _publish(staging: Path, final: Path) -> None:
    """Rename the complete folder into place; a replaced version is moved aside first, then deleted."""
    if not final.exists():
        os.rename(staging, final)
        return
    retired = final.with_name(f"{TEMPORARY_PREFIX}retired-{final.name}-{os.getpid()}")
    os.rename(final, retired)
    os.rename(staging, final)
    shutil.rmtree(retired, ignore_errors=True)


def _current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def read_card(version_folder: Path) -> ModelCard:
    return ModelCard.model_validate(json.loads((version_folder / EXTRA_FOLDER / CARD_FILE).read_text()))
