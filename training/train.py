"""The training loop: AdamW with warmup, EMA weights, AMP on GPU, gradient accumulation, DDP, resume.

``train`` reads as its steps: set up the processes, build the model and its training windows, the
optimizer and its schedule (or resume them), then per epoch ``train_epoch`` and, on the main process,
``judge_epoch``, which evaluates the averaged weights on dev and keeps the best epoch's checkpoint.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tokenizers import Tokenizer
from tqdm import tqdm
from transformers import AutoTokenizer

from ..model.extractor import Extractor
from ..model.schema import CONFIG_FILE, ExtractorConfig, Relation, Thresholds
from ..model.tokenize import TOKENIZER_FILE, encode_windows, sentence_ends, split_cjk_characters
from .data import Example, ReadSummary
from .evaluate import APART_MIN_TRIPLES, Choice, cached, choose_thresholds, score
from .network import PointerExtractor, TorchRuntime, load_encoder, save_extractor
from .settings import STATE_FILE, TrainSettings, auto_epochs
from .start import ANY_RELATION, check_start, helper_labels, start_from
from .targets import (
    Feature,
    add_any_objects,
    collate,
    length_batches,
    loss_masks,
    loss_parts,
    make_features,
    mask_tokens,
    slices,
)

LOG_FILE = "training_log.jsonl"
# Measured on this project's CPU (AVX-512 BF16, no AMX), benchmarks/train_throughput.py, median of 3:
# MiniLM 51.9 -> 59.3 sentences/s and e5-small 11.5 -> 16.3 with bf16 autocast; the demo's dev F1 unchanged.
AUTO_CPU_BF16 = True
Bar = Callable[..., tqdm]  # (total, description, unit, leave=True) -> a progress bar


def return_large_blocks() -> None:
    """Let glibc give every block of 1 MiB or more its own mapping, returned to the system when freed: with
    its default, growing threshold, the heap kept ~200 MB of freed tensors of changing shapes (e5-small on
    DuIE 2.0: peak 2,107 -> 1,895 MB, same speed; benchmarks/README.md). No-op without glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD


def silent_bar(total: int, desc: str, unit: str, leave: bool = True) -> tqdm:
    return tqdm(total=total, disable=True)


class EMA:
    """Exponential moving average of the weights, with the usual warm-up of the decay."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.shadow = {name: p.detach().clone().float() for name, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        parameters = dict(model.named_parameters())
        torch._foreach_lerp_(
            list(self.shadow.values()), [parameters[name].detach().float() for name in self.shadow], 1 - decay
        )

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Swap the averaged weights in for the duration of the block (tensors swapped, nothing copied)."""
        parameters = dict(model.named_parameters())

        def swap() -> None:
            for name, value in self.shadow.items():
                parameters[name].data, self.shadow[name] = value, parameters[name].data

        swap()
        try:
            yield
        finally:
            swap()


def prepare_tokenizer(encoder: str, split_cjk: bool) -> tuple[Tokenizer, int | None]:
    """The encoder's fast tokenizer, CJK split per character, as a plain ``tokenizers.Tokenizer``, and the id
    of its mask token."""
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    if not tokenizer.is_fast:
        raise ValueError(f"{encoder} has no fast tokenizer; character offsets need one")
    backend = tokenizer.backend_tokenizer
    backend.no_padding()
    backend.no_truncation()
    return split_cjk_characters(backend) if split_cjk else backend, tokenizer.mask_token_id


def setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); started by torchrun when WORLD_SIZE > 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        return rank, world, torch.device("cuda", local_rank)
    return rank, world, torch.device(device_name if device_name not in ("auto", "cuda") else "cpu")


def make_optimizer(model: PointerExtractor, settings: TrainSettings) -> torch.optim.Optimizer:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_encoder = name.startswith("encoder.")
        decays = parameter.ndim > 1 and "LayerNorm" not in name
        groups.setdefault((is_encoder, decays), []).append(parameter)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": settings.learning_rate if is_encoder else settings.head_learning_rate,
                "weight_decay": settings.weight_decay if decays else 0.0,
            }
            for (is_encoder, decays), params in groups.items()
        ],
        fused=True,  # one kernel per step instead of a chain of elementwise ops: a third faster on CPU
    )


def warmup_then_linear(total_steps: int, warmup_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPU computes bf16 matrix products natively."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast type of ``--precision`` on this device; None for plain fp32. ``auto``: bf16 (or fp16
    with loss scaling) on CUDA; on the CPU, fp32 (AUTO_CPU_BF16 says whether bf16 measured faster)."""
    if precision == "fp32":
        return None
    if device.type == "cuda":
        if precision == "bf16" or torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float16
    if precision == "bf16" or (AUTO_CPU_BF16 and cpu_has_bf16()):
        return torch.bfloat16
    return None


def pick_examples(examples: list[Example], count: int = 6, max_chars: int = 300) -> list[str]:
    """Short sentences with triples, each adding predicates the ones before did not show."""
    shown: set[str] = set()
    chosen = []
    for example in sorted(examples, key=lambda e: -len({t.predicate for t in e.triples})):
        predicates = {triple.predicate for triple in example.triples}
        if predicates - shown and len(example.text) <= max_chars:
            chosen.append(example.text)
            shown |= predicates
        if len(chosen) == count:
            break
    return chosen


@dataclass
class Kept:
    """The epoch kept so far: its dev figures, and the thresholds it is judged at, with their record."""

    best: dict = field(default_factory=lambda: {"f1": -1.0})
    thresholds: Thresholds = field(default_factory=Thresholds)
    record: dict | None = None  # the model card's account of the thresholds: given, or chosen on dev


@dataclass
class Run:
    """What one training run is made of, built before its first epoch."""

    model: PointerExtractor
    tokenizer: Tokenizer
    mask_id: int | None
    config: ExtractorConfig
    features: list[Feature]
    settings: TrainSettings  # with the epochs resolved and masking off where the encoder has no mask token
    start: dict | None  # what the model started from (--init-from), as the model card records it


@dataclass
class Optimization:
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: EMA
    scaler: torch.amp.GradScaler
    batches_per_epoch: int


def build_run(
    train_examples: list[Example],
    dev_examples: list[Example],
    relations: list[Relation],
    encoder_name: str,
    settings: TrainSettings,
    summary: ReadSummary,
    device: torch.device,
    log: Callable[[str], None],
    output: Path | None,
) -> Run:
    """The model on ``device``, the tokenizer (saved in ``output``, on the main process), the extractor's
    config and the training windows' targets."""
    encoder = load_encoder(encoder_name)
    max_length = min(settings.max_length, encoder.config.max_position_embeddings)
    if max_length < settings.max_length:
        log(f"max length {settings.max_length} is more than the encoder's {max_length} positions; using {max_length}")
    config = ExtractorConfig(
        relations,
        max_length,
        window_stride=max_length // 4,
        subject_distance=settings.subject_distance,
        sentence_distance=settings.sentence_distance,
        examples=pick_examples(dev_examples),
    )
    # read once: the start's relations size the model (its helper), then its weights fill it
    start_config = check_start(Path(settings.init_from), encoder.config) if settings.init_from else None
    helpers = helper_labels(start_config, config.labels) if start_config and settings.any_relation else []
    labels = [*config.labels, *helpers]
    tokenizer, mask_id = prepare_tokenizer(encoder_name, config.split_cjk)
    ends = sentence_ends(tokenizer) if settings.sentence_distance else None
    model = PointerExtractor(
        encoder, len(labels), settings.subject_distance, len(helpers), settings.sentence_distance, ends
    ).to(device)
    if settings.freeze_embeddings:  # half of MiniLM's weights: no gradient, optimizer or average step for them
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
        log("word embeddings: kept as pretrained (--no-freeze-embeddings trains them)")
    start = start_from(model, config.labels, Path(settings.init_from), helpers, start_config) if start_config else None
    if start:
        log(f"started from {settings.init_from}: {start['relations_kept']} relations' object heads kept, "
            f"{start['relations_fresh']} fresh")  # fmt: skip
    if helpers:
        log(f"its any-object relation '{ANY_RELATION}' trains beside yours (--no-any-relation: not); it is not saved")
    if output is not None:
        tokenizer.save(str(output / TOKENIZER_FILE))
    if settings.mask_rate and mask_id is None:
        log(f"{encoder_name} has no mask token: training without masking (--mask-rate)")
        settings = replace(settings, mask_rate=0.0)
    # the windows inference reads: a long sentence is cut into overlapping windows, none is truncated
    texts = [example.text for example in train_examples]
    windows = encode_windows(tokenizer, texts, max_length, config.window_stride)
    features = make_features(train_examples, windows, config.labels, summary)
    if helpers:
        add_any_objects(features, len(config.labels))
    log(f"training data: {len(features)} sentences; {summary.line() or 'every triple placed'}")
    if settings.epochs is None:
        tokens = sum(len(feature.ids) for feature in features)
        layers, hidden = model.encoder.config.num_hidden_layers, model.encoder.config.hidden_size
        settings = replace(settings, epochs=auto_epochs(tokens, layers, hidden))
        log(f"epochs: {settings.epochs} (auto: {tokens} tokens through {layers} layers)")
    return Run(model, tokenizer, mask_id, config, features, settings, start)


def build_optimization(run: Run, device: torch.device, world: int, log: Callable[[str], None]) -> Optimization:
    """AdamW, warm-up then linear decay, the weights' average, and loss scaling for fp16."""
    settings = run.settings
    optimizer = make_optimizer(run.model, settings)
    batches_per_epoch = len(run.features) // (settings.batch_size * world) or 1
    steps_per_epoch = math.ceil(batches_per_epoch / settings.accumulate)
    total_steps = steps_per_epoch * settings.epochs
    # Warm-up: a fraction of all steps, but at most a third of an epoch (or 20 steps): a long warm-up left
    # DuIE 1.0's dev F1 at 0 after the first epoch (benchmarks/README.md).
    warmup_steps = max(1, min(int(settings.warmup * total_steps), max(steps_per_epoch // 3, 20)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_linear(total_steps, warmup_steps))
    amp_dtype = autocast_dtype(settings.precision, device)
    log(
        f"precision: {'fp32' if amp_dtype is None else str(amp_dtype).removeprefix('torch.')} autocast on {device.type}"
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return Optimization(optimizer, scheduler, EMA(run.model, settings.ema_decay), scaler, batches_per_epoch)


class ResumeError(ValueError):
    """The training state cannot continue in the model this run builds."""


def resume(
    run: Run, optimization: Optimization, output: Path, kept: Kept, device: torch.device
) -> tuple[int, Kept, list[dict], dict]:
    """The epoch to start from, what was kept, the epochs' records so far and the settings the run started
    with, from the training state in ``output``."""
    state = torch.load(output / STATE_FILE, map_location=device, weights_only=False)
    try:
        run.model.load_state_dict(state["model"])
    except RuntimeError as error:  # PyTorch's size mismatch: another schema, encoder or head than the saved run
        changed = changed_settings(state.get("settings", {}), run.settings)
        differs = (
            f"settings that differ: {', '.join(changed)}" if changed else "the schema or the data's relations differ"
        )
        raise ResumeError(
            f"--resume: the training state in '{output}' holds a model of another shape ({differs}; "
            f"{str(error).splitlines()[0].rstrip(':.')}); resume with the same data and settings, or train "
            "again with --overwrite"
        ) from None
    optimization.optimizer.load_state_dict(state["optimizer"])
    optimization.scheduler.load_state_dict(state["scheduler"])
    optimization.ema.shadow, optimization.ema.updates = state["ema"], state["ema_updates"]
    if (output / CONFIG_FILE).is_file():  # the kept checkpoint's thresholds
        saved = ExtractorConfig.load(output)
        kept = Kept(state["best"], saved.thresholds, saved.training.get("thresholds"))
    else:
        kept = replace(kept, best=state["best"])
    return state["epoch"], kept, state.get("epochs", []), state.get("settings", {})


def changed_settings(started: dict, settings: TrainSettings) -> list[str]:
    """The settings a resumed run changes ("epochs 2 -> 3"), ``resume`` itself aside."""
    now = asdict(settings)
    changed = [name for name, value in started.items() if name != "resume" and now.get(name) != value]
    return [f"{name} {started[name]} -> {now.get(name)}" for name in changed]


def train_epoch(
    run: Run, optimization: Optimization, trained: torch.nn.Module, epoch: int, device: torch.device, bar: Bar
) -> dict:
    """One pass over this rank's share of the batches; the mean loss, sentences/s and skipped batches."""
    settings, model, (rank, world) = run.settings, run.model, distributed_rank()
    optimizer, scheduler, ema, scaler = (
        optimization.optimizer,
        optimization.scheduler,
        optimization.ema,
        optimization.scaler,
    )
    batches = length_batches(run.features, settings.batch_size, random.Random(settings.seed + epoch))
    batches = batches[: optimization.batches_per_epoch * world][rank::world]  # same count on every rank
    bar = bar(len(batches), f"epoch {epoch + 1}/{settings.epochs}", "batch")
    amp_dtype = autocast_dtype(settings.precision, device)
    model.train()
    started, sentences, loss_sum, skipped = time.perf_counter(), 0, 0.0, 0
    masking = torch.Generator().manual_seed(settings.seed * 1000 + epoch)  # the same masks after --resume
    for step, batch_features in enumerate(batches):
        loss = step_slices(run, trained, batch_features, device, amp_dtype, scaler, masking)
        if not torch.isfinite(loss):  # never let one bad batch poison the weights
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
            bar.update(1)
            continue
        if (step + 1) % settings.accumulate == 0 or step + 1 == len(batches):
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ema.update(model)
        sentences += len(batch_features) * world
        loss_sum += loss.item()
        bar.set_postfix(
            loss=f"{loss_sum / (step + 1):.4f}", sent_s=f"{sentences / (time.perf_counter() - started):.1f}"
        )
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - started
    return {"loss": loss_sum / max(1, len(batches)), "train_sentences_per_s": sentences / seconds, "skipped": skipped}


def step_slices(
    run: Run,
    trained: torch.nn.Module,
    features: list[Feature],
    device: torch.device,
    amp_dtype: torch.dtype | None,
    scaler: torch.amp.GradScaler,
    masking: torch.Generator,
) -> torch.Tensor:
    """Forward and backward through one batch, in slices of at most ``max_batch_tokens`` padded tokens;
    the batch's loss (NaN or infinite as soon as one slice's is, and then not all of it is backpropagated)."""
    settings = run.settings
    parts = [
        collate(part, run.model.num_relations, settings.negative_subjects)
        for part in slices(features, settings.max_batch_tokens)
    ]
    # the loss is averaged over all the batch's tokens: each slice adds its sums over these counts
    masks = [loss_masks(part) for part in parts]
    subject_count = sum(mask.sum() for mask, _ in masks).to(device)
    object_count = sum(object_mask.sum() for _, object_mask in masks).to(device)
    loss = torch.zeros((), device=device)
    for index, part in enumerate(parts):
        if settings.mask_rate:
            part.input_ids = mask_tokens(part, settings.mask_rate, run.mask_id, masking)
        part = part.to(device)
        # DistributedDataParallel: gradients meet across ranks once per batch, however many slices each has
        last = index == len(parts) - 1
        with contextlib.nullcontext() if last or not hasattr(trained, "no_sync") else trained.no_sync():
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                subject_logits, object_logits = trained(part.input_ids, part.attention_mask, part.subjects)
            parts_loss = loss_parts(subject_logits, object_logits, part)
            share = parts_loss.loss(settings.subject_loss_weight, subject_count, object_count)
            if not torch.isfinite(share):
                return share.detach()
            scaler.scale(share / settings.accumulate).backward()
        loss = loss + share.detach()
    return loss


def distributed_rank() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def evaluate_epoch(
    extractor: Extractor, dev_examples: list[Example], choose: bool, bar: Bar
) -> tuple[dict, dict | None, Choice | None]:
    """Dev figures of one epoch's weights: at the extractor's thresholds (the curve), and, with ``choose``,
    at the thresholds chosen on dev for these weights (``choose_thresholds``; the graphs run once for all)."""
    texts, gold = [example.text for example in dev_examples], [example.triples for example in dev_examples]
    runs = cached(extractor)
    windows = runs.windows(texts)
    with bar(sum(map(len, windows)), "extract", "window", leave=False) as windows_bar:
        curve = score(gold, [found.triples for found in runs.extract_windows(windows, windows_bar.update)])
    if not choose:
        return curve, None, None
    choice = choose_thresholds(runs, texts, gold)
    found = runs.with_thresholds(choice.thresholds).extract_windows(windows)
    return curve, score(gold, [extraction.triples for extraction in found]), choice


def judge_epoch(
    run: Run,
    ema: EMA,
    dev_examples: list[Example],
    epoch: int,
    figures: dict,
    kept: Kept,
    training: dict,
    output: Path,
    bar: Bar,
) -> tuple[dict, dict, dict | None, Choice | None, Kept]:
    """The averaged weights on dev, at the kept thresholds (the curve) and, unless thresholds were given,
    at thresholds chosen for them; the epoch's record joins the model card's table (``training``), and the
    weights are saved as the checkpoint when they beat the epoch kept so far (judged at their own chosen
    thresholds on enough dev triples, see ``APART_MIN_TRIPLES``)."""
    settings, model = run.settings, run.model
    choose = not settings.thresholds and any(example.triples for example in dev_examples)
    judge_at_chosen = choose and sum(len(example.triples) for example in dev_examples) >= APART_MIN_TRIPLES
    base = settings.base_thresholds()
    model.eval()
    with ema.applied(model):
        evaluated = time.perf_counter()
        extractor = Extractor(run.tokenizer, run.config, TorchRuntime(model), base, settings.eval_batch_size)
        metrics, at_chosen, choice = evaluate_epoch(extractor, dev_examples, choose, bar)
        metrics["seconds"] = time.perf_counter() - evaluated
        record = epoch_record(epoch, figures, metrics, at_chosen)
        training["epochs"].append(record)
        judged = at_chosen if judge_at_chosen else metrics
        if judged["f1"] < kept.best.get("judged_f1", kept.best["f1"]):  # on a tie the later, longer-trained weights
            return record, metrics, at_chosen, choice, kept
        best = {key: value for key, value in metrics.items() if key != "per_predicate"}
        best |= {"epoch": epoch, "judged_f1": judged["f1"]}
        if at_chosen:
            best |= {f"{key}_at_chosen_thresholds": at_chosen[key] for key in ("precision", "recall", "f1")}
        kept = Kept(best, choice.thresholds, choice.record("dev")) if choice else replace(kept, best=best)
        save_extractor(model, kept_config(run.config, kept, training), output)
        (output / "dev_metrics.json").write_text(json.dumps(at_chosen or metrics, indent=2, ensure_ascii=False))
    return record, metrics, at_chosen, choice, kept


def kept_config(config: ExtractorConfig, kept: Kept, training: dict) -> ExtractorConfig:
    """The extractor's config as saved: the kept epoch's thresholds, and the model card's record."""
    return replace(
        config, thresholds=kept.thresholds, training=training | {"thresholds": kept.record, "best": kept.best}
    )


def epoch_record(epoch: int, figures: dict, metrics: dict, at_chosen: dict | None) -> dict:
    """One line of the training log and of the model card's table."""
    record = {"epoch": epoch, "loss": figures["loss"], "train_sentences_per_s": figures["train_sentences_per_s"]}
    record |= {key: metrics[key] for key in ("precision", "recall", "f1", "partial_f1")}
    return record | ({"f1_at_chosen_thresholds": at_chosen["f1"]} if at_chosen else {})


def epoch_line(
    record: dict, metrics: dict, at_chosen: dict | None, choice: Choice | None, kept: Kept, base: Thresholds
) -> str:
    chosen = (
        f"; at {choice.thresholds.describe()} chosen on dev: P {at_chosen['precision']:.4f} "
        f"R {at_chosen['recall']:.4f} F1 {at_chosen['f1']:.4f}"
        if at_chosen and choice
        else ""
    )
    return (
        f"epoch {record['epoch']}: loss {record['loss']:.4f}, {record['train_sentences_per_s']:.1f} sent/s, "
        f"dev at {base.describe()}: P {metrics['precision']:.4f} R {metrics['recall']:.4f} "
        f"F1 {metrics['f1']:.4f} (partial F1 {metrics['partial_f1']:.4f}){chosen}; kept: epoch {kept.best['epoch']}"
    )


def save_state(run: Run, optimization: Optimization, epoch: int, kept: Kept, records: list[dict], output: Path) -> None:
    """What ``--resume`` continues from; ``records``: the epochs' records for the model card."""
    state = {
        "model": run.model.state_dict(),
        "optimizer": optimization.optimizer.state_dict(),
        "scheduler": optimization.scheduler.state_dict(),
        "ema": optimization.ema.shadow,
        "ema_updates": optimization.ema.updates,
        "epoch": epoch,
        "best": kept.best,
        "epochs": records,
        "settings": asdict(run.settings),
    }
    torch.save(state, output / STATE_FILE)


def train(
    train_examples: list[Example],
    dev_examples: list[Example],
    relations: list[Relation],
    encoder_name: str,
    output: Path,
    settings: TrainSettings,
    summary: ReadSummary,
    log: Callable[[str], None] = print,
    files: list[dict] | None = None,
    bar: Bar = silent_bar,
) -> dict:
    """Train, keep the best EMA checkpoint by dev F1 in ``output``; returns that checkpoint's dev metrics."""
    rank, world, device = setup_distributed(settings.device)
    return_large_blocks()
    main_process = rank == 0
    if not main_process:
        log, bar = (lambda message: None), silent_bar  # the other ranks train silently
    if world > 1:
        log(f"distributed: {world} processes, backend {dist.get_backend()}, device {device.type}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if not settings.resume and main_process:
        (output / LOG_FILE).unlink(missing_ok=True)  # a fresh run (--overwrite) starts a fresh log
    torch.manual_seed(settings.seed)
    run = build_run(
        train_examples, dev_examples, relations, encoder_name, settings, summary, device, log,
        output if main_process else None,
    )  # fmt: skip
    training = {"encoder": encoder_name, "files": files or [], "settings": asdict(run.settings), "epochs": []}
    if run.start:
        training["init_from"] = run.start
    optimization = build_optimization(run, device, world, log)
    base = settings.base_thresholds()
    kept = Kept(thresholds=base, record={"chosen": "given", **base.to_dict()} if settings.thresholds else None)
    start_epoch = 0
    if settings.resume and (output / STATE_FILE).is_file():
        start_epoch, kept, training["epochs"], started = resume(run, optimization, output, kept, device)
        log(f"resumed from {output / STATE_FILE} at epoch {start_epoch + 1}")
        if changed := changed_settings(started, run.settings):
            log(
                f"warning: resumed with other settings ({', '.join(changed)}); the learning rate follows the "
                "schedule of the new ones from the step reached (with more epochs it rises back, then falls)"
            )
    trained = torch.nn.parallel.DistributedDataParallel(run.model) if world > 1 else run.model
    for epoch in range(start_epoch, run.settings.epochs):
        figures = train_epoch(run, optimization, trained, epoch, device, bar)
        if figures["skipped"]:
            log(f"epoch {epoch + 1}: skipped {figures['skipped']} batches whose loss was not finite")
        if main_process:
            judged = judge_epoch(run, optimization.ema, dev_examples, epoch + 1, figures, kept, training, output, bar)
            record, metrics, at_chosen, choice, kept = judged
            with open(output / LOG_FILE, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            log(epoch_line(record, metrics, at_chosen, choice, kept, base))
            save_state(run, optimization, epoch + 1, kept, training["epochs"], output)
        if world > 1:
            dist.barrier()
    if main_process:  # the model card lists every epoch, not only those up to the kept one
        kept_config(run.config, kept, training).save(output)
    if world == 1:
        return kept.best
    # Free the DDP wrapper while the process group is still registered: if its reducer held the
    # last reference, gloo's destructor would join a thread that waits for our GIL (a deadlock).
    del trained
    return share_best(kept.best)


def share_best(best: dict) -> dict:
    """Rank 0's result on every rank; then the process group is taken down."""
    shared = [best]
    dist.broadcast_object_list(shared, src=0)
    dist.barrier()
    dist.destroy_process_group()
    return shared[0]
