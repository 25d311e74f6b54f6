"""The pointer extractor: encoder -> subject pointers -> Conditional LayerNorm on the subject -> object pointers.

Probabilities follow the original "half pointer, half tagging" model: sigmoid squared for subjects and
to the fourth power for objects, which keeps the many negatives from swamping the few positives and is
what the 0.6 / 0.5 thresholds were tuned for. Training works on logits for numerical stability.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import logging as transformers_logging

from ..model.extractor import Extractor
from ..model.schema import ExtractorConfig, Thresholds
from ..model.tokenize import load_tokenizer, sentence_ends

WEIGHTS_FILE = "model.safetensors"
SUBJECT_POWER = 2
OBJECT_POWER = 4
# Fresh heads start at about the share of tokens their pointers mark (a subject starts or ends at ~3% of
# tokens; an object of one given relation at ~0.1%), not at p = 0.5 ** power: from there, the first steps'
# gradient only pulled every output down, AdamW passed it to every encoder weight at the full learning
# rate, and e5-small on 200 or 500 DuIE 1.0 sentences collapsed to one probability on every token (dev F1
# 0 at every epoch). Measured in benchmarks/README.md, "Starting points and small data".
SUBJECT_PRIOR, OBJECT_PRIOR = 0.03, 0.001


def prior_logit(prior: float, power: int) -> float:
    """The logit whose sigmoid, raised to ``power`` (the graphs' output), is ``prior``."""
    root = prior ** (1 / power)
    return math.log(root / (1 - root))


class ConditionalLayerNorm(nn.Module):
    """LayerNorm whose gain and bias are shifted by projections of a condition vector.

    The projections start at zero, so at first this is a plain LayerNorm and the encoder's
    output is not disturbed.
    """

    def __init__(self, hidden_size: int, condition_size: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.bias = nn.Parameter(torch.zeros(hidden_size))
        self.weight_shift = nn.Linear(condition_size, hidden_size, bias=False)
        self.bias_shift = nn.Linear(condition_size, hidden_size, bias=False)
        nn.init.zeros_(self.weight_shift.weight)
        nn.init.zeros_(self.bias_shift.weight)

    def forward(self, hidden: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        mean = hidden.mean(-1, keepdim=True)
        variance = (hidden - mean).pow(2).mean(-1, keepdim=True)
        normed = (hidden - mean) * torch.rsqrt(variance + self.eps)
        weight = self.weight + self.weight_shift(condition).unsqueeze(1)
        bias = self.bias + self.bias_shift(condition).unsqueeze(1)
        return normed * weight + bias


class PointerExtractor(nn.Module):
    def __init__(
        self,
        encoder: PreTrainedModel,
        num_relations: int,
        subject_distance: int = 0,
        helpers: int = 0,
        sentence_distance: int = 0,
        sentence_end_ids: list[int] | None = None,
    ) -> None:
        """``helpers``: how many of the ``num_relations`` (the last ones) are trained but neither run by the
        graphs nor saved (the start's any-object relation, ``training.start.helper_labels``).
        ``subject_distance`` > 0: the object heads see each token's distance to the subject's first token,
        clipped to that many tokens either way. Conditional LayerNorm alone tells them what the subject is, not
        where: the demo, trained on one person's facts at a time, gave every person of a text every city and
        firm in it (benchmarks/README.md, "A position signal for the object heads").
        ``sentence_distance`` > 0: they also see how many sentences lie between each token and the subject,
        up to that many either way; sentences end at the tokens ``sentence_end_ids`` (``tokenize.sentence_ends``).
        Graph 1 then passes each token's sentence number to graph 2 as one more column of ``hidden``, so the
        graphs' inputs and outputs keep their names and the runtimes pass them through unchanged. Without it,
        a person's fact and the next sentence's city scored alike: most of the demo's wrong triples joined
        two sentences' names (benchmarks/README.md, "Sentences for the object heads")."""
        super().__init__()
        hidden_size = encoder.config.hidden_size
        self.encoder = encoder
        self.num_relations, self.helpers = num_relations, helpers
        self.subject_distance = subject_distance
        if subject_distance:  # starts at zero: a start without it, or a fresh model, begins unchanged
            self.distance = nn.Embedding(2 * subject_distance + 1, hidden_size)
            nn.init.zeros_(self.distance.weight)
        self.sentence_distance = sentence_distance
        if sentence_distance:
            self.sentences = nn.Embedding(2 * sentence_distance + 1, hidden_size)
            nn.init.zeros_(self.sentences.weight)
            ends = torch.tensor(sentence_end_ids or [], dtype=torch.long)
            self.register_buffer("sentence_end_ids", ends, persistent=False)  # rebuilt from the tokenizer
        self.subject_head = nn.Linear(hidden_size, 2)
        self.conditional_norm = ConditionalLayerNorm(hidden_size, 2 * hidden_size, encoder.config.layer_norm_eps)
        self.object_head = nn.Linear(hidden_size, num_relations * 2)
        with torch.no_grad():  # the pointers start at their base rates (see SUBJECT_PRIOR)
            self.subject_head.bias.fill_(prior_logit(SUBJECT_PRIOR, SUBJECT_POWER))
            self.object_head.bias.fill_(prior_logit(OBJECT_PRIOR, OBJECT_POWER))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states (B, L, H; with ``sentence_distance``, H + 1: each token's sentence number last) and
        subject start/end logits (B, L, 2)."""
        # An additive 4-D mask built here, not the 2-D one: ONNX tracing of transformers' own mask
        # handling can freeze the sequence length into the graph.
        # For export it is built as transformers 4 did (expand, invert, masked_fill): that is the
        # pattern ONNX Runtime's optimiser fuses into its Attention operator. Training keeps the
        # cheaper broadcast form; both give the same numbers.
        dtype = self.subject_head.weight.dtype
        mask = attention_mask.unsqueeze(1).unsqueeze(2)
        if torch.onnx.is_in_onnx_export():
            mask = mask.expand(-1, 1, input_ids.shape[1], -1)
        inverted = 1.0 - mask.to(dtype)
        additive = inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)
        hidden = self.encoder(input_ids=input_ids, attention_mask=additive).last_hidden_state
        subject_logits = self.subject_head(hidden)
        if self.sentence_distance:
            hidden = torch.cat([hidden, self.sentence_numbers(input_ids).unsqueeze(-1).to(hidden.dtype)], dim=-1)
        return hidden, subject_logits

    def sentence_numbers(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L): how many sentence ends come before each token (an end belongs to its own sentence)."""
        ends = (input_ids.unsqueeze(-1) == self.sentence_end_ids).sum(-1)
        return torch.cumsum(ends, dim=1) - ends

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, subjects: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training step: subject logits for the batch and object logits for the given subjects."""
        hidden, subject_logits = self.encode(input_ids, attention_mask)
        return subject_logits, self.object_logits(hidden, subjects)

    def object_logits(self, hidden: torch.Tensor, subjects: torch.Tensor) -> torch.Tensor:
        """Object start/end logits (N, L, R, 2) for subjects given as rows of (batch index, start, end)."""
        rows, starts, ends = subjects[:, 0], subjects[:, 1], subjects[:, 2]
        if self.sentence_distance:
            hidden, numbers = hidden[..., :-1], hidden[..., -1].long()
        condition = torch.cat([hidden[rows, starts], hidden[rows, ends]], dim=-1)
        tokens = hidden[rows]
        if self.subject_distance:
            offsets = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0) - starts.unsqueeze(1)
            tokens = tokens + clipped(self.distance, offsets, self.subject_distance).to(tokens.dtype)
        if self.sentence_distance:
            apart = numbers[rows] - numbers[rows, starts].unsqueeze(1)
            tokens = tokens + clipped(self.sentences, apart, self.sentence_distance).to(tokens.dtype)
        conditioned = self.conditional_norm(tokens, condition)
        logits = self.object_head(conditioned)
        return logits.view(logits.shape[0], logits.shape[1], self.num_relations, 2)


def clipped(embedding: nn.Embedding, offsets: torch.Tensor, limit: int) -> torch.Tensor:
    """The embedding of each offset from the subject, offsets beyond ``limit`` either way taken as ``limit``."""
    return embedding(offsets.clamp(-limit, limit) + limit)


def probabilities(logits: torch.Tensor, power: int) -> torch.Tensor:
    return torch.sigmoid(logits.float()) ** power


class EncoderGraph(nn.Module):
    """Graph 1 as exported and as run by PyTorch: input ids, mask -> hidden states, subject probabilities."""

    def __init__(self, model: PointerExtractor) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, logits = self.model.encode(input_ids, attention_mask)
        return hidden, probabilities(logits, SUBJECT_POWER)


class ObjectsGraph(nn.Module):
    """Graph 2: hidden states, subjects (batch index, start, end), thresholds (start, end) -> the positions
    (subject, token, relation) where an object start or end probability passes its threshold, and the two
    probabilities there. Thresholding here means only a handful of numbers leave the accelerator instead
    of an (N, L, R, 2) tensor. Thresholds below 0 return every position (the parity check uses that)."""

    def __init__(self, model: PointerExtractor) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, hidden: torch.Tensor, subjects: torch.Tensor, thresholds: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model.object_logits(hidden, subjects)
        if self.model.helpers:  # training's evaluation: the helpers' rows are not the schema's
            logits = logits[:, :, : self.model.num_relations - self.model.helpers]
        probs = probabilities(logits, OBJECT_POWER)
        positions = torch.nonzero((probs[..., 0] > thresholds[0]) | (probs[..., 1] > thresholds[1]))
        return positions, probs[positions[:, 0], positions[:, 1], positions[:, 2]]


def load_encoder(name_or_path: str | Path, config: AutoConfig | None = None) -> PreTrainedModel:
    """A Hugging Face BERT-family encoder in float32, from pretrained weights or (with ``config``) blank."""
    kwargs = {"add_pooling_layer": False}  # the pooler is unused; BERT-family models accept this flag
    transformers_logging.set_verbosity_error()  # the unused pooler weights are reported otherwise
    transformers_logging.disable_progress_bar()
    if config is not None:
        return AutoModel.from_config(config, **kwargs)
    return AutoModel.from_pretrained(name_or_path, dtype=torch.float32, **kwargs)


def save_extractor(model: PointerExtractor, config: ExtractorConfig, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.encoder.config.save_pretrained(directory)
    state = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    if model.helpers:  # saved without the helpers' rows: an ordinary model of the schema
        rows = 2 * (model.num_relations - model.helpers)
        state |= {name: state[name][:rows].contiguous() for name in ("object_head.weight", "object_head.bias")}
    save_file(state, directory / WEIGHTS_FILE)
    config.save(directory)


def load_extractor(directory: Path) -> tuple[PointerExtractor, ExtractorConfig]:
    directory = Path(directory)
    config = ExtractorConfig.load(directory)
    encoder = load_encoder(directory, AutoConfig.from_pretrained(directory))
    ends = sentence_ends(load_tokenizer(directory)) if config.sentence_distance else None
    model = PointerExtractor(encoder, len(config.relations), config.subject_distance, 0, config.sentence_distance, ends)
    model.load_state_dict(load_file(directory / WEIGHTS_FILE))
    return model.eval(), config


class TorchRuntime:
    """The model's two graphs on PyTorch, as ``model.runtime.Runtime``: a checkpoint run without exporting it."""

    def __init__(self, model: PointerExtractor) -> None:
        self.device = next(model.parameters()).device
        self.encoder_graph, self.objects_graph = EncoderGraph(model), ObjectsGraph(model)

    @torch.inference_mode()
    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        hidden, subject_probs = self.encoder_graph(
            torch.from_numpy(input_ids).to(self.device), torch.from_numpy(attention_mask).to(self.device)
        )
        return hidden, subject_probs.cpu().numpy()

    @torch.inference_mode()
    def objects(
        self, hidden: torch.Tensor, subjects: np.ndarray, thresholds: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        positions, probs = self.objects_graph(
            hidden, torch.from_numpy(subjects).to(self.device), torch.from_numpy(thresholds).to(self.device)
        )
        return positions.cpu().numpy(), probs.cpu().numpy()


def torch_extractor(
    directory: Path, device: str = "cpu", batch_size: int = 32, thresholds: Thresholds | None = None
) -> Extractor:
    """A training checkpoint as an ``Extractor`` on PyTorch (pipelined on a GPU)."""
    model, config = load_extractor(directory)
    runtime = TorchRuntime(model.to(device))
    return Extractor(load_tokenizer(directory), config, runtime, thresholds, batch_size, device.startswith("cuda"))
