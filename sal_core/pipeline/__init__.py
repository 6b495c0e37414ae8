"""The pipeline's steps before evaluation, one module each: prepare_model, prepare_dataset, generate,
score, merge, push. Each is what `sal <step>` runs (its flags live in sal_core/cli/<step>.py)."""
