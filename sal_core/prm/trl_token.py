"""Token-classification PRMs trained with TRL's PRMTrainer or `sal train-prm` (AutoModelForTokenClassification).

The input is built as PRMTrainer builds it (`step_layout`, shared with `sal train-prm`'s
tokenization so training and scoring cannot drift apart): the BOS token (when the tokenizer has
one), the problem, then each step tokenized on its own and followed by the step separator, with
nothing between the problem and the first step. The label of a step sits on its last token (the
separator's last token); the score is softmax(logits)[1] there, label 1 meaning a correct step.

The separator is the one the PRM was trained with: the config's `prms.<name>.step_separator` when
set, else what `sal train-prm` records in the model folder's `prm_config.json` (`step_separator`).
Third-party TRL checkpoints record none; without the config key they get TRL's default "\\n"
(PRMConfig.step_separator) and one warning line, since PRMs trained for step-by-step search use
"\\n\\n" (search-and-learn's and hotncold's recipes/training/*/train.sh pass --step_separator="\\n\\n").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from sal_core.errors import ModelError
from sal_core.prm.hf import Encoded, TransformersPRM, load_pretrained
from sal_core.settings.jobs import PRMSettings

log = logging.getLogger(__name__)

#: TRL's default step separator, used when the model folder does not record one
TRL_DEFAULT_SEPARATOR = "\n"
#: the file in a PRM folder that records how it was trained (written by `sal train-prm`)
PRM_CONFIG_FILE = "prm_config.json"


def step_layout(
    bos_id: int | None, prompt_ids: list[int], step_ids: Sequence[list[int]], separator_ids: list[int]
) -> Encoded:
    """[BOS] + prompt + (step + separator) per step; positions[k] = index of step k's last token."""
    ids = ([bos_id] if bos_id is not None else []) + list(prompt_ids)
    positions = []
    for step in step_ids:
        ids += list(step) + separator_ids
        positions.append(len(ids) - 1)
    return Encoded(ids, positions)


def read_step_separator(path: str) -> str | None:
    """The step separator recorded in a PRM folder (local or on the Hub), or None when it records none."""
    from transformers.utils import cached_file

    try:
        found = cached_file(path, PRM_CONFIG_FILE, _raise_exceptions_for_missing_entries=False)
    except (OSError, ValueError):
        return None
    if not found:
        return None
    try:
        with open(found) as handle:
            separator = json.load(handle).get("step_separator")
    except (OSError, ValueError, AttributeError) as err:
        raise ModelError(f"{path}: unreadable {PRM_CONFIG_FILE} ({err})") from err
    if not isinstance(separator, str) or not separator:
        raise ModelError(f"{path}: {PRM_CONFIG_FILE} has no usable step_separator ({separator!r})")
    return separator


class TRLTokenPRM(TransformersPRM):
    """Step scores from a token classifier at the end of each step."""

    def __init__(
        self,
        settings: PRMSettings,
        tokenizer: Any,
        model: Any,
        device: Any,
        step_separator: str = TRL_DEFAULT_SEPARATOR,
    ) -> None:
        super().__init__(settings, tokenizer, model, device)
        self.step_separator = step_separator
        self.separator_ids = tokenizer.encode(step_separator, add_special_tokens=False)
        if not self.separator_ids:
            raise ModelError(f"prm {settings.name}: the step separator {step_separator!r} has no tokens")

    def encode(self, problem: str, steps: list[str]) -> Encoded:
        tokenize = self.tokenizer
        step_ids = tokenize(steps, add_special_tokens=False)["input_ids"] if steps else []
        prompt_ids = tokenize(problem, add_special_tokens=False)["input_ids"]
        return step_layout(self.tokenizer.bos_token_id, prompt_ids, step_ids, self.separator_ids)

    def step_probs(self, input_ids: Any, attention_mask: Any, rows: Any, cols: Any) -> Any:
        logits = self.forward_module(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits[rows, cols].float().softmax(dim=-1)[:, 1]


def load_trl(settings: PRMSettings, tokenizer: Any, device: Any, dtype: Any) -> TRLTokenPRM:
    from transformers import AutoModelForTokenClassification

    model = load_pretrained(settings, AutoModelForTokenClassification, device, dtype)
    if model.config.num_labels != 2:
        raise ModelError(
            f"prm {settings.name}: {settings.path} has {model.config.num_labels} label(s); "
            "a TRL PRM classifies each step into 2 labels (0 = wrong, 1 = correct)"
        )
    return TRLTokenPRM(settings, tokenizer, model, device, choose_separator(settings))


def choose_separator(settings: PRMSettings) -> str:
    """The config's separator, else the checkpoint's, else TRL's default with one warning line."""
    if settings.step_separator is not None:
        return settings.step_separator
    recorded = read_step_separator(settings.path)
    if recorded is not None:
        return recorded
    log.warning(
        "prms.%s: neither %s/%s nor prms.%s.step_separator names the step separator; using TRL's "
        'default "\\n" (set step_separator: "\\n\\n" for a PRM trained on blank-line steps)',
        settings.name,
        settings.path,
        PRM_CONFIG_FILE,
        settings.name,
    )
    return TRL_DEFAULT_SEPARATOR
