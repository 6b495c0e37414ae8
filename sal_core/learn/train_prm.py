"""Fine-tune a process reward model the way TRL's PRMTrainer does, on transformers' Trainer.

The model is `AutoModelForTokenClassification` with 2 labels (0 = wrong step, 1 = correct step) on
top of any causal LM; rows are tokenized by `sal_core.learn.stepwise` exactly as TRL 1.13 tokenizes
them; dropout is switched off as TRL does by default; with `lora_r > 0` only LoRA adapters and the
new classification head are trained (peft), and they are merged into the saved weights, so the
output folder loads like any other `type: trl` PRM. docs/learn.md explains why this is not TRL itself.

Files: checkpoints go to `<out>.checkpoints/` (Trainer's `checkpoint-N` folders plus the settings
they were made with); a rerun with the same settings resumes from the last complete checkpoint, and
one with other settings starts over. The finished model is written to a temporary folder beside
`out` and renamed, so a killed job never leaves a folder that looks done; it holds the weights, the
tokenizer, `prm_config.json` (the step separator and how the model was trained) and `loss_log.csv`.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sal_core.devices import dtype_name, gpu_capability
from sal_core.errors import ModelError
from sal_core.hub import checkpoint
from sal_core.learn.stepwise import load_stepwise, tokenize_batch
from sal_core.paths import TRAIN_CHECKPOINTS
from sal_core.prm.trl_token import PRM_CONFIG_FILE
from sal_core.settings.learn import TrainSettings
from sal_core.tables import write_text_atomic

log = logging.getLogger(__name__)

SETTINGS_FILE = "sal_train_settings.json"
LOSS_LOG = "loss_log.csv"
ID2LABEL = {0: "wrong", 1: "correct"}
#: names transformers gives the token-classification head (peft's TOKEN_CLS trains these in full)
HEAD_MODULES = ("score", "classifier")


@dataclass
class TrainResult:
    """What a finished training run did: where the model is, how far it went, where it resumed from."""

    out: Path
    global_step: int
    resumed_from: str | None
    losses: list[dict[str, float]]


def _step(path: Path) -> int:
    tail = path.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The highest `checkpoint-N` whose trainer_state.json (Trainer writes it last) is there."""
    done = [p for p in checkpoints.glob("checkpoint-*") if _step(p) >= 0 and (p / "trainer_state.json").is_file()]
    return str(max(done, key=_step)) if done else None


def checkpoint_to_resume(checkpoints: Path, fingerprint: dict[str, Any]) -> str | None:
    """The last complete checkpoint made with these settings. Checkpoints of other settings are
    deleted (a retrain must not continue a different run), and so are incomplete ones (killed while saving)."""
    settings_file = checkpoints / SETTINGS_FILE
    if checkpoints.exists():
        try:
            recorded = json.loads(settings_file.read_text())
        except (OSError, ValueError):
            recorded = None
        if recorded != fingerprint:
            log.warning("%s: made with other training settings (or none recorded); starting over", checkpoints)
            shutil.rmtree(checkpoints)
    checkpoints.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(fingerprint, indent=1, sort_keys=True), settings_file)
    last = last_complete_checkpoint(checkpoints)
    for path in checkpoints.glob("checkpoint-*"):
        if last is None or _step(path) > _step(Path(last)):
            log.warning("%s: incomplete checkpoint, removed", path)
            shutil.rmtree(path)
    return last


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelError(f"base_model: cannot load a tokenizer from {path}: {err}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(settings: TrainSettings, tokenizer: Any) -> Any:
    """A 2-label token classifier on the base model, LoRA-wrapped if asked (float32: bf16 is mixed precision)."""
    import torch
    from transformers import AutoModelForTokenClassification

    try:
        model = AutoModelForTokenClassification.from_pretrained(
            settings.base_model,
            num_labels=2,
            id2label=ID2LABEL,
            label2id={v: k for k, v in ID2LABEL.items()},
            dtype=torch.float32,
        )
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise ModelError(f"base_model: cannot load {settings.base_model} as a token classifier: {err}") from err
    model.config.pad_token_id = tokenizer.pad_token_id
    if settings.freeze_base:
        for name, param in model.named_parameters():
            param.requires_grad = name.split(".")[0] in HEAD_MODULES
        if not any(param.requires_grad for param in model.parameters()):
            raise ModelError(f"base_model: {settings.base_model} has no head named {' or '.join(HEAD_MODULES)}")
    if settings.lora_r:
        from peft import LoraConfig, TaskType, get_peft_model

        if settings.gradient_checkpointing:
            model.enable_input_require_grads()
        # TOKEN_CLS makes peft train the new classification head in full (modules_to_save), so the
        # head must not also get an adapter ("all-linear" would match it)
        lora = LoraConfig(
            task_type=TaskType.TOKEN_CLS,
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=settings.lora_target_modules,
            exclude_modules=list(HEAD_MODULES),
        )
        model = get_peft_model(model, lora)
    if settings.disable_dropout:  # as TRL does, after wrapping: LoRA's own dropout goes too
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    return model


def tokenized_dataset(settings: TrainSettings, rows: Any, tokenizer: Any, args: Any) -> Any:
    """The stepwise rows as a `datasets.Dataset` of input_ids + labels (tokenized once, on the main process first)."""
    import datasets

    table = datasets.Dataset.from_pandas(rows, preserve_index=False)
    limits = {
        "max_length": settings.max_length,
        "max_completion_length": settings.max_completion_length,
        "train_on_last_step_only": settings.train_on_last_step_only,
    }
    with args.main_process_first(desc="tokenizing"):
        return table.map(
            tokenize_batch,
            batched=True,
            fn_kwargs={"tokenizer": tokenizer, "step_separator": settings.step_separator, **limits},
            remove_columns=table.column_names,
            num_proc=settings.dataset_num_proc,
            desc="tokenizing",
            features=datasets.Features(
                {
                    "input_ids": datasets.Sequence(datasets.Value("int64")),
                    "labels": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )


#: TrainSettings fields that are TrainingArguments of the same name
SAME_NAMED_ARGUMENTS = (
    "max_steps",
    "learning_rate",
    "gradient_accumulation_steps",
    "warmup_steps",
    "weight_decay",
    "gradient_checkpointing",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "seed",
    "report_to",
)


def training_arguments(settings: TrainSettings, checkpoints: Path) -> Any:
    import torch
    from transformers import TrainingArguments

    bf16 = settings.bf16
    if bf16 is None:
        # the project's precision rule (devices.dtype_name): bfloat16 only where the GPU has it in hardware
        bf16 = torch.cuda.is_available() and dtype_name("auto", "cuda", gpu_capability(), "train.bf16") == "bfloat16"
    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size,
        lr_scheduler_type=settings.lr_scheduler,
        bf16=bf16,
        logging_first_step=True,
        save_strategy="steps",
        disable_tqdm=False,
        **{name: getattr(settings, name) for name in SAME_NAMED_ARGUMENTS},
    )


def loss_rows(log_history: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    """The training-loss entries of Trainer's log (restored from the checkpoint on a resume)."""
    keys = ("step", "epoch", "loss", "learning_rate", "grad_norm")
    return [{k: entry[k] for k in keys if k in entry} for entry in log_history if "loss" in entry]


def write_output(trainer: Any, settings: TrainSettings, out: Path, tokenizer: Any, resumed_from: str | None) -> None:
    """Save the model (LoRA merged) with its tokenizer, prm_config.json and loss log to a temp folder, then rename."""
    import pandas as pd

    tmp = out.parent / f".{out.name}.partial"
    if trainer.is_world_process_zero():
        shutil.rmtree(tmp, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    if settings.lora_r:
        if trainer.is_world_process_zero():
            merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload()
            merged.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
    else:
        trainer.save_model(str(tmp))  # every process: gathers sharded (DeepSpeed / FSDP) weights
    if trainer.is_world_process_zero():
        (tmp / "training_args.bin").unlink(missing_ok=True)
        record = {
            "step_separator": settings.step_separator,
            "trained_by": "sal train-prm",
            "global_step": trainer.state.global_step,
            "resumed_from": resumed_from,
            "settings": asdict(settings),
        }
        (tmp / PRM_CONFIG_FILE).write_text(json.dumps(record, indent=1) + "\n")
        pd.DataFrame(loss_rows(trainer.state.log_history)).to_csv(tmp / LOSS_LOG, index=False)
        tmp.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    trainer.accelerator.wait_for_everyone()


def train_prm(
    settings: TrainSettings,
    out: str | Path,
    checkpoint_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    keep_checkpoints: bool = False,
) -> TrainResult:
    """Train (or resume training) a PRM and write it to `out`; see the module doc for the files."""
    from accelerate import PartialState
    from transformers import DataCollatorForTokenClassification, Trainer

    settings.validate("training")
    out = Path(out)
    checkpoints = Path(checkpoint_dir or TRAIN_CHECKPOINTS.format(out=out))
    rows = load_stepwise(settings.dataset, settings.split, settings.subset, settings.limit)  # bad data fails first
    fingerprint = settings.fingerprint()
    # a Hub base model loads from its staged snapshot (sal_core.hub); what is recorded keeps its name
    staged = replace(settings, base_model=checkpoint(settings.base_model, None, "training.base_model"))
    tokenizer = load_tokenizer(staged.base_model)
    args = training_arguments(settings, checkpoints)
    dataset = tokenized_dataset(settings, rows, tokenizer, args)
    state = PartialState()
    if state.is_main_process:  # only one process may delete stale checkpoints
        checkpoint_to_resume(checkpoints, fingerprint)
    state.wait_for_everyone()
    resume = last_complete_checkpoint(checkpoints)
    if resume:
        log.info("resuming from %s", resume)
    trainer = Trainer(
        model=load_model(staged, tokenizer),
        args=args,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=list(callbacks),
    )
    trainer.train(resume_from_checkpoint=resume)
    write_output(trainer, settings, out, tokenizer, resume)
    if trainer.is_world_process_zero() and not keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    log.info("wrote PRM to %s after %d steps", out, trainer.state.global_step)
    return TrainResult(out, trainer.state.global_step, resume, loss_rows(trainer.state.log_history))
