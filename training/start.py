"""Starting points (``triplex train --init-from MODEL``): a new model that begins from a trained one.

The encoder, the subject head and Conditional LayerNorm are taken from MODEL; of the object head, the rows
of every relation whose label the new schema shares with MODEL's, and fresh rows for the others. The
schema is the new model's own. A MODEL built from public data (benchmarks/starts.py) also has the
any-object relation ``*`` (every object of a subject, whatever the relation): it goes on training beside
the schema's relations, on the user's data, as a helper, and is left out of the saved model (measured in
benchmarks/README.md, "Starting points and small data"). A MODEL whose encoder differs from the new one
(vocabulary, layers, hidden size) is refused: its weights would not fit, or would mean something else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from ..model.schema import CONFIG_FILE, ExtractorConfig
from .network import WEIGHTS_FILE, PointerExtractor

ANY_RELATION = "*"  # a start's relation that holds the objects of every relation of a subject

# What an encoder must share with the starting point's for its weights to be taken.
SHAPE = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")


class StartError(ValueError):
    """The starting point cannot be used for this model; the message says why, in one line."""


def check_start(folder: Path, encoder_config: AutoConfig) -> ExtractorConfig:
    """The starting point's config, once it is known to be a checkpoint whose encoder matches."""
    if not (folder / CONFIG_FILE).is_file() or not (folder / WEIGHTS_FILE).is_file():
        raise StartError(
            f"--init-from '{folder}' is not a trained model folder (no {CONFIG_FILE} and {WEIGHTS_FILE}); "
            "give a folder that 'triplex train' wrote (not an export)"
        )
    theirs = json.loads((folder / "config.json").read_text())
    ours = encoder_config.to_dict()
    different = [name for name in SHAPE if theirs.get(name) != ours.get(name)]
    if different:
        pairs = ", ".join(f"{name} {theirs.get(name)} against {ours.get(name)}" for name in different)
        raise StartError(f"--init-from '{folder}' was trained from another encoder ({pairs}); use its encoder")
    return ExtractorConfig.load(folder)


def helper_labels(start: ExtractorConfig, labels: list[str]) -> list[str]:
    """The relations trained beside ``labels`` and left out of the saved model: the start's any-object
    relation, where it has one and the schema does not name it."""
    return [ANY_RELATION] if ANY_RELATION in start.labels and ANY_RELATION not in labels else []


def start_from(
    model: PointerExtractor,
    labels: list[str],
    folder: Path,
    helpers: list[str] | None = None,
    start: ExtractorConfig | None = None,
) -> dict:
    """Load the starting point in ``folder`` into ``model`` (whose relations are ``labels``, then
    ``helpers``: see ``helper_labels``); what the model card records of it. ``start``: the folder's
    config, as ``check_start`` gave it, if the caller has read it already."""
    start = start or check_start(folder, model.encoder.config)
    for setting in ("subject_distance", "sentence_distance"):
        if getattr(start, setting) not in (0, getattr(model, setting)):
            flag = "--" + setting.replace("_", "-")
            raise StartError(f"--init-from '{folder}' was trained with {flag} {getattr(start, setting)}; pass the same")
    weights = load_file(folder / WEIGHTS_FILE)
    theirs = {label: index for index, label in enumerate(start.labels)}
    shared = [label for label in labels if label in theirs]
    state = {name: tensor for name, tensor in weights.items() if not name.startswith("object_head.")}
    loaded = model.load_state_dict(state, strict=False)  # the object head is taken row by row, below
    # a start without subject or sentence distances leaves them at zero, where they begin anyway
    positions = {"distance.weight", "sentences.weight"}
    if loaded.unexpected_keys or set(loaded.missing_keys) - {"object_head.weight", "object_head.bias", *positions}:
        missing = [*loaded.missing_keys, *loaded.unexpected_keys][:3]
        raise StartError(f"--init-from '{folder}': its weights do not fit this model ({', '.join(missing)} ...)")
    with torch.no_grad():
        for name in positions & set(loaded.missing_keys):
            model.get_parameter(name).zero_()
        for index, label in enumerate([*labels, *(helpers or [])]):
            if label in theirs:
                rows = slice(2 * theirs[label], 2 * theirs[label] + 2)  # its start and end logits
                model.object_head.weight[2 * index : 2 * index + 2] = weights["object_head.weight"][rows]
                model.object_head.bias[2 * index : 2 * index + 2] = weights["object_head.bias"][rows]
    return {
        "path": str(folder),
        "sha256": hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest(),
        "encoder": start.training.get("encoder", "unknown"),
        "trained_on": [file["path"] for file in start.training.get("files", []) if file.get("role") == "train"],
        "relations_kept": len(shared),
        "relations_fresh": len(labels) - len(shared),
        "helpers": helpers or [],  # trained beside the schema's relations, not saved
    }
