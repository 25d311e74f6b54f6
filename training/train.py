"""The training loop: AdamW with warmup, EMA weights, AMP on GPU, gradient accumulation, DDP, resume."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.distributed as dist
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from triplex.model.network import PointerExtractor, load_encoder, save_extractor, torch_runners
from triplex.model.pipeline import Extractor
from triplex.model.progress import progress
from triplex.model.schema import CONFIG_FILE, ExtractorConfig, Relation, Thresholds
from triplex.model.tokenize import TOKENIZER_FILE, encode_windows, split_cjk_characters
from triplex.training.data import Example, Summary
from triplex.training.evaluate import APART_MIN_TRIPLES, cached_runs, record_thresholds, score
from triplex.training.settings import STATE_FILE, TrainSettings, auto_epochs
from triplex.training.targets import collate, length_batches, make_features, mask_tokens, pointer_loss

LOG_FILE = "training_log.jsonl"
# Measured on this project's CPU (AVX-512 BF16, no AMX), benchmarks/train_throughput.py, median of 3:
# MiniLM 51.9 -> 59.3 sentences/s and e5-small 11.5 -> 16.3 with bf16 autocast; the demo's dev F1 unchanged.
AUTO_CPU_BF16 = True


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
        """Swap the averaged weights in for the duration of the block."""
        parameters = dict(model.named_parameters())
        backup = {name: parameters[name].detach().clone() for name in self.shadow}
        with torch.no_grad():
            for name, value in self.shadow.items():
                parameters[name].copy_(value)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, value in backup.items():
                    parameters[name].copy_(value)


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


def evaluate_epoch(extractor: Extractor, dev_examples: list[Example], choose: bool) -> tuple[dict, dict | None]:
    """Dev figures of one epoch's weights: at the extractor's thresholds (the curve), and, with ``choose``,
    at the thresholds chosen on dev for these weights (``record_thresholds``; the graphs run once for
    both). Returns both figures; the chosen thresholds are left on the extractor's config."""
    texts, gold = [example.text for example in dev_examples], [example.triples for example in dev_examples]
    runs = cached_runs(extractor)
    windows = runs.windows(texts)
    curve = score(gold, [found.triples for found in runs.extract_windows(windows, progress=True)])
    if not choose:
        return curve, None
    record_thresholds(runs, texts, gold, "dev")
    return curve, score(gold, [found.triples for found in runs.extract_windows(windows)])


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


def train(
    train_examples: list[Example],
    dev_examples: list[Example],
    relations: list[Relation],
    encoder_name: str,
    output: Path,
    settings: TrainSettings,
    summary: Summary,
    log=print,
    files: list[dict] | None = None,
) -> dict:
    """Train, keep the best EMA checkpoint by dev F1 in ``output``; returns that checkpoint's dev metrics."""
    rank, world, device = setup_distributed(settings.device)
    main_process = rank == 0
    if not main_process:
        log = lambda message: None  # noqa: E731 - the other ranks train silently
    if world > 1:
        log(f"distributed: {world} processes, backend {dist.get_backend()}, device {device.type}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    if not settings.resume and main_process:
        (output / LOG_FILE).unlink(missing_ok=True)  # a fresh run (--overwrite) starts a fresh log
    torch.manual_seed(settings.seed)

    model = PointerExtractor(load_encoder(encoder_name), len(relations)).to(device)
    if settings.freeze_embeddings:  # half of MiniLM's weights: no gradient, optimizer or average step for them
        model.encoder.get_input_embeddings().weight.requires_grad_(False)
        log("word embeddings: kept as pretrained (--no-freeze-embeddings trains them)")
    max_length = min(settings.max_length, model.encoder.config.max_position_embeddings)
    if max_length < settings.max_length:
        log(f"max length {settings.max_length} is more than the encoder's {max_length} positions; using {max_length}")
    config = ExtractorConfig(relations, max_length, window_stride=max_length // 4, examples=pick_examples(dev_examples))
    tokenizer, mask_id = prepare_tokenizer(encoder_name, config.split_cjk)
    if main_process:
        tokenizer.save(str(output / TOKENIZER_FILE))
    if settings.mask_rate and mask_id is None:
        log(f"{encoder_name} has no mask token: training without masking (--mask-rate)")
        settings = replace(settings, mask_rate=0.0)
    # the windows inference reads: a long sentence is cut into overlapping windows, none is truncated
    texts = [example.text for example in train_examples]
    features = make_features(
        train_examples, encode_windows(tokenizer, texts, max_length, config.window_stride), config.labels, summary
    )
    log(f"training data: {len(features)} sentences; {summary.line() or 'every triple placed'}")
    if settings.epochs is None:
        tokens = sum(len(feature.ids) for feature in features)
        encoder_config = model.encoder.config
        settings = replace(
            settings, epochs=auto_epochs(tokens, encoder_config.num_hidden_layers, encoder_config.hidden_size)
        )
        log(f"epochs: {settings.epochs} (auto: {tokens} tokens through {encoder_config.num_hidden_layers} layers)")
    config.training = {"encoder": encoder_name, "files": files or [], "settings": asdict(settings), "epochs": []}

    optimizer = make_optimizer(model, settings)
    batches_per_epoch = len(features) // (settings.batch_size * world) or 1
    steps_per_epoch = math.ceil(batches_per_epoch / settings.accumulate)
    total_steps = steps_per_epoch * settings.epochs
    # Warm-up: a fraction of all steps, but at most a third of an epoch (or 20 steps). Measured on DuIE
    # 1.0 (2,601 sentences, e5-small): warm-up over 0.72 epoch (6% of 12 epochs) left dev F1 at 0 after
    # epoch 1, over 0.36 epoch (6% of 6) it reached 0.37; 6% of 20 epochs is 1.2 epochs of warm-up.
    warmup_steps = max(1, min(int(settings.warmup * total_steps), max(steps_per_epoch // 3, 20)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_linear(total_steps, warmup_steps))
    ema = EMA(model, settings.ema_decay)
    start_epoch, best = 0, {"f1": -1.0}
    if settings.thresholds:  # given: every epoch is judged and kept at them
        config.thresholds = Thresholds.parse(settings.thresholds)
        config.training["thresholds"] = {"chosen": "given", **config.thresholds.to_dict()}
    base_thresholds = config.thresholds  # the per-epoch curve is drawn at these
    choose = not settings.thresholds and any(example.triples for example in dev_examples)
    # each epoch judged at its own chosen thresholds: only on enough triples (see APART_MIN_TRIPLES)
    judge_at_chosen = choose and sum(len(example.triples) for example in dev_examples) >= APART_MIN_TRIPLES
    kept = config.thresholds, config.training.get("thresholds")
    if settings.resume and (output / STATE_FILE).is_file():
        state = torch.load(output / STATE_FILE, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ema.shadow, ema.updates = state["ema"], state["ema_updates"]
        start_epoch, best = state["epoch"], state["best"]
        if (output / CONFIG_FILE).is_file():  # the kept checkpoint's thresholds
            saved = ExtractorConfig.load(output)
            kept = saved.thresholds, saved.training.get("thresholds")
        log(f"resumed from {output / STATE_FILE} at epoch {start_epoch + 1}")
    trained = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    amp_dtype = autocast_dtype(settings.precision, device)
    use_amp = amp_dtype is not None
    log(
        f"precision: {'fp32' if amp_dtype is None else str(amp_dtype).removeprefix('torch.')} autocast on {device.type}"
    )
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    for epoch in range(start_epoch, settings.epochs):
        batches = length_batches(features, settings.batch_size, random.Random(settings.seed + epoch))
        batches = batches[: batches_per_epoch * world][rank::world]  # same count on every rank
        model.train()
        started, sentences, loss_sum, skipped = time.perf_counter(), 0, 0.0, 0
        bar = progress(len(batches), f"epoch {epoch + 1}/{settings.epochs}", "batch", enabled=main_process)
        masking = torch.Generator().manual_seed(settings.seed * 1000 + epoch)  # the same masks after --resume
        for step, batch_features in enumerate(batches):
            batch = collate(batch_features, len(relations), settings.negative_subjects)
            if settings.mask_rate:
                batch.input_ids = mask_tokens(batch, settings.mask_rate, mask_id, masking)
            batch = batch.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                subject_logits, object_logits = trained(batch.input_ids, batch.attention_mask, batch.subjects)
            loss = pointer_loss(subject_logits, object_logits, batch, settings.subject_loss_weight)
            if not torch.isfinite(loss):  # never let one bad batch poison the weights
                skipped += 1
                optimizer.zero_grad(set_to_none=True)
                bar.update(1)
                continue
            scaler.scale(loss / settings.accumulate).backward()
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
            rate = sentences / (time.perf_counter() - started)
            bar.set_postfix(loss=f"{loss_sum / (step + 1):.4f}", sent_s=f"{rate:.1f}")
            bar.update(1)
        bar.close()
        train_seconds = time.perf_counter() - started
        if skipped:
            log(f"epoch {epoch + 1}: skipped {skipped} batches whose loss was not finite")

        if main_process:
            model.eval()
            with ema.applied(model):
                evaluated = time.perf_counter()
                config.thresholds = base_thresholds
                extractor = Extractor(tokenizer, config, *torch_runners(model), settings.eval_batch_size)
                metrics, at_chosen = evaluate_epoch(extractor, dev_examples, choose)
                judged = at_chosen if judge_at_chosen else metrics
                metrics["seconds"] = time.perf_counter() - evaluated
                if judged["f1"] >= best.get("judged_f1", best["f1"]):  # on a tie the later, longer-trained weights
                    best = {key: value for key, value in metrics.items() if key != "per_predicate"} | {
                        "epoch": epoch + 1,
                        "judged_f1": judged["f1"],
                    }
                    if at_chosen:
                        best |= {f"{key}_at_chosen_thresholds": at_chosen[key] for key in ("precision", "recall", "f1")}
                    kept = config.thresholds, config.training.get("thresholds")
                    config.training["best"] = best
                    save_extractor(model, config, output)
                    dev_metrics = json.dumps(at_chosen or metrics, indent=2, ensure_ascii=False)
                    (output / "dev_metrics.json").write_text(dev_metrics)
            record = {
                "epoch": epoch + 1,
                "loss": loss_sum / max(1, len(batches)),
                "train_sentences_per_s": sentences / train_seconds,
                **{key: metrics[key] for key in ("precision", "recall", "f1", "partial_f1")},
                **({"f1_at_chosen_thresholds": at_chosen["f1"]} if at_chosen else {}),
            }
            config.training["epochs"].append(record)
            with open(output / LOG_FILE, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            chosen_figures = (
                f"; at {config.thresholds.describe()} chosen on dev: P {at_chosen['precision']:.4f} "
                f"R {at_chosen['recall']:.4f} F1 {at_chosen['f1']:.4f}"
                if at_chosen
                else ""
            )
            log(
                f"epoch {epoch + 1}: loss {record['loss']:.4f}, {record['train_sentences_per_s']:.1f} sent/s, "
                f"dev at {base_thresholds.describe()}: P {metrics['precision']:.4f} R {metrics['recall']:.4f} "
                f"F1 {metrics['f1']:.4f} (partial F1 {metrics['partial_f1']:.4f}){chosen_figures}; "
                f"kept: epoch {best['epoch']}"
            )
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "ema": ema.shadow,
                "ema_updates": ema.updates,
                "epoch": epoch + 1,
                "best": best,
                "settings": asdict(settings),
            }
            torch.save(state, output / STATE_FILE)
        if world > 1:
            dist.barrier()
    if main_process:
        config.thresholds, config.training["thresholds"] = kept  # the kept epoch's, not the last one's
        config.training["best"] = best
        config.save(output)  # the model card lists every epoch, not only those up to the kept one
    if world > 1:
        shared = [best]
        dist.broadcast_object_list(shared, src=0)  # every rank reports rank 0's result
        best = shared[0]
        # Free the DDP wrapper while the process group is still registered: if its reducer held the
        # last reference, gloo's destructor would join a thread that waits for our GIL (a deadlock).
        del trained
        dist.barrier()
        dist.destroy_process_group()
    return best
