"""The "learn" half of search-and-learn: label steps, train a PRM, benchmark PRMs on ProcessBench.

- `stepwise`: stepwise-supervision datasets (prompt, completions = steps, labels) and their
  TRL-compatible tokenization.
- `train_prm`: fine-tune a token-classification PRM (transformers Trainer, optional LoRA via peft).
- `label_steps`: Math-Shepherd-style step labels from rollouts of the project's own completions.
- `processbench`: the ProcessBench benchmark for any PRM.
"""
