"""Gold triples -> token spans -> pointer targets, batching and the pointer loss."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..model.schema import Triple, relation_label
from ..model.tokenize import Encoded, pad
from .data import Example, ReadSummary
from .network import OBJECT_POWER, SUBJECT_POWER

Span = tuple[int, int]


@dataclass
class Feature:
    """One sentence as token ids with its subjects and, per subject, (relation index, object span)."""

    ids: np.ndarray
    objects: dict[Span, list[tuple[int, int, int]]] = field(default_factory=dict)


def relation_triples(triple: Triple) -> list[tuple[str, Span, Span]]:
    """A triple as (relation label, subject chars, object chars): one per slot of a complex object."""
    subject = (triple.subject.start, triple.subject.end)
    pairs = [(triple.predicate, subject, (triple.object.start, triple.object.end))]
    for slot, entity in triple.qualifiers:
        pairs.append((relation_label(triple.predicate, slot), subject, (entity.start, entity.end)))
    return pairs


def make_features(
    examples: list[Example], windows: list[list[Encoded]], labels: list[str], summary: ReadSummary
) -> list[Feature]:
    """Pointer targets for every window of every example (the windows inference reads), each window with
    the triples that lie wholly inside it. A triple inside no window is counted: ``fits_no_window`` when it
    is longer than a window, ``not_token_aligned`` when an entity edge falls inside a token."""
    index = {label: position for position, label in enumerate(labels)}
    features = []
    for example, text_windows in zip(examples, windows):
        text_features = [Feature(window.ids) for window in text_windows]
        for triple in example.triples:
            for label, subject, obj in relation_triples(triple):
                placed = False
                for window, feature in zip(text_windows, text_features):
                    subject_tokens, object_tokens = window.token_span(*subject), window.token_span(*obj)
                    if subject_tokens is not None and object_tokens is not None:
                        feature.objects.setdefault(subject_tokens, []).append((index[label], *object_tokens))
                        placed = True
                if not placed:
                    first, last = min(subject[0], obj[0]), max(subject[1], obj[1])
                    covered = any(covers(window, first, last) for window in text_windows)
                    summary.counts["not_token_aligned" if covered else "fits_no_window"] += 1
        features += text_features
    summary.counts["windows"] += len(features)
    return features


def add_any_objects(features: list[Feature], index: int) -> None:
    """Every subject's objects once more under relation ``index`` (the any-object helper), each span once."""
    for feature in features:
        for objects in feature.objects.values():
            spans = dict.fromkeys((start, end) for _, start, end in objects)
            objects += [(index, start, end) for start, end in spans]


def covers(window: Encoded, first: int, last: int) -> bool:
    """Whether the window's tokens cover the characters first..last."""
    content = window.starts >= 0
    return bool(content.any()) and window.starts[content].min() <= first and last <= window.ends[content].max()


@dataclass
class TrainingBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    subject_targets: torch.Tensor  # (B, L, 2)
    subjects: torch.Tensor  # (N, 3): batch index, start, end
    object_targets: torch.Tensor  # (N, L, R, 2)
    object_weight: torch.Tensor  # (N,): 0 for the placeholder row of a batch without subjects

    def to(self, device: torch.device) -> TrainingBatch:
        return TrainingBatch(*(tensor.to(device, non_blocking=True) for tensor in vars(self).values()))


def collate(features: list[Feature], num_relations: int, negative_subjects: bool = False) -> TrainingBatch:
    """Pad to the batch's longest sentence; every gold subject of every sentence gets an object row. With
    ``negative_subjects`` so does every gold object that is no subject there, with no objects: the object
    heads learn to find nothing for an entity that is not a subject (many false alarms start at one)."""
    input_ids, attention_mask = pad([feature.ids for feature in features])
    length = input_ids.shape[1]
    subject_targets = torch.zeros(len(features), length, 2)
    subjects, rows = [], []
    for row, feature in enumerate(features):
        for (start, end), objects in feature.objects.items():
            subject_targets[row, start, 0] = subject_targets[row, end, 1] = 1
            subjects.append((row, start, end))
            rows.append(objects)
        if negative_subjects:
            others = {(start, end) for objects in feature.objects.values() for _, start, end in objects}
            for start, end in sorted(others - feature.objects.keys()):
                subjects.append((row, start, end))
                rows.append([])
    object_weight = torch.ones(max(len(subjects), 1))
    if not subjects:  # keep every parameter in the graph (DistributedDataParallel needs that)
        subjects, rows, object_weight = [(0, 0, 0)], [[]], torch.zeros(1)
    object_targets = torch.zeros(len(subjects), length, num_relations, 2)
    for n, objects in enumerate(rows):
        for relation, start, end in objects:
            object_targets[n, start, relation, 0] = object_targets[n, end, relation, 1] = 1
    return TrainingBatch(
        torch.from_numpy(input_ids),
        torch.from_numpy(attention_mask),
        subject_targets,
        torch.tensor(subjects, dtype=torch.long),
        object_targets,
        object_weight,
    )


def mask_tokens(batch: TrainingBatch, rate: float, mask_id: int, generator: torch.Generator) -> torch.Tensor:
    """The batch's token ids with each token between a sentence's first and last ([CLS] and [SEP]) replaced by
    ``mask_id`` with probability ``rate``, entities' tokens included: their pointers must then be found from the
    context, and a sentence is never seen the same way twice (see TrainSettings.mask_rate)."""
    positions = torch.arange(batch.input_ids.shape[1])
    inside = (positions > 0) & (positions < batch.attention_mask.sum(1, keepdim=True) - 1)
    chosen = inside & (torch.rand(batch.input_ids.shape, generator=generator) < rate)
    return batch.input_ids.masked_fill(chosen, mask_id)


def length_batches(features: list[Feature], batch_size: int, rng: random.Random) -> list[list[Feature]]:
    """Shuffled batches of similar length: sort within chunks of 50 batches, then shuffle the batches."""
    order = list(range(len(features)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for begin in range(0, len(order), chunk):
        part = sorted(order[begin : begin + chunk], key=lambda i: len(features[i].ids))
        batches += [[features[i] for i in part[j : j + batch_size]] for j in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def pointer_bce(logits: torch.Tensor, targets: torch.Tensor, power: int) -> torch.Tensor:
    """Binary cross-entropy on p = sigmoid(logits) ** power, computed in log space."""
    log_p = power * F.logsigmoid(logits.float())
    # log(1 - p) = log(1 - exp(log_p)), stable on both sides of log 2. p is kept below 1: at p == 1
    # log(1 - p) is -inf, and 0 * -inf (in the loss, or in torch.where's unused branch) is NaN.
    capped = log_p.clamp(max=-1e-6)
    log_not_p = torch.where(capped > -0.693, torch.log(-torch.expm1(capped)), torch.log1p(-torch.exp(capped)))
    return -(targets * log_p + (1 - targets) * log_not_p)


@dataclass
class LossParts:
    """A pointer loss as sums and the counts they are averaged over, so that the slices of one batch
    (``slices``) add up to the loss of the whole batch."""

    subject_sum: torch.Tensor
    subject_count: torch.Tensor
    object_sum: torch.Tensor
    object_count: torch.Tensor

    def loss(self, subject_weight: float, subject_count: torch.Tensor, object_count: torch.Tensor) -> torch.Tensor:
        """This part's share of the loss of a batch with those counts in all."""
        return subject_weight * (self.subject_sum / subject_count) + self.object_sum / object_count.clamp(min=1)


def loss_masks(batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens the subject loss is averaged over, and per subject row those of the object loss (weighted)."""
    mask = batch.attention_mask.float()
    return mask, mask[batch.subjects[:, 0]] * batch.object_weight[:, None]


def loss_parts(subject_logits: torch.Tensor, object_logits: torch.Tensor, batch: TrainingBatch) -> LossParts:
    mask, object_mask = loss_masks(batch)
    subject_loss = pointer_bce(subject_logits, batch.subject_targets, SUBJECT_POWER).mean(-1)
    object_loss = pointer_bce(object_logits, batch.object_targets, OBJECT_POWER).mean(-1).sum(-1)
    return LossParts((subject_loss * mask).sum(), mask.sum(), (object_loss * object_mask).sum(), object_mask.sum())


def pointer_loss(
    subject_logits: torch.Tensor, object_logits: torch.Tensor, batch: TrainingBatch, subject_weight: float
) -> torch.Tensor:
    """Subject loss averaged over tokens, times ``subject_weight`` (see TrainSettings.subject_loss_weight), plus
    object loss summed over relations, averaged over tokens; on the probabilities the graphs output (the powers
    SUBJECT_POWER and OBJECT_POWER of the sigmoid)."""
    parts = loss_parts(subject_logits, object_logits, batch)
    return parts.loss(subject_weight, parts.subject_count, parts.object_count)


def slices(features: list[Feature], max_tokens: int) -> list[list[Feature]]:
    """The batch's sentences in runs whose padded size (rows times the longest) stays within ``max_tokens``
    (a sentence longer than that is a run of its own): a long batch's activations are held one run at a
    time, and the runs' gradients add up to the batch's."""
    if len(features) * max(len(f.ids) for f in features) <= max_tokens:
        return [features]
    runs: list[list[Feature]] = []
    longest = 0
    for feature in sorted(features, key=lambda f: len(f.ids)):
        longest_with = max(longest, len(feature.ids))
        if runs and longest_with * (len(runs[-1]) + 1) <= max_tokens:
            runs[-1].append(feature)
            longest = longest_with
        else:
            runs.append([feature])
            longest = len(feature.ids)
    return runs
