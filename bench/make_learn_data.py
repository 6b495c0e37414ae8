"""Build the fixed data of the learn loop from ../shared/data (run once; the outputs are committed).

    .venv/bin/python bench/make_learn_data.py            # reads ../shared/data, writes sal_core/builtin/

Writes:
- sal_core/builtin/processbench/subset.jsonl: PER_CLASS erroneous (label >= 0) and PER_CLASS correct
  (label -1) samples of each ProcessBench split, the ones whose id has the smallest blake2b hash
  (a fixed pseudo-random choice that neither favours early ids nor depends on file order), in
  split order, both classes mixed in id-hash order (so the first N of a split are a fair sample);
  fields split, id, generator, problem, steps, label, final_answer_correct.
- sal_core/builtin/gsm8k_train_pool.jsonl and gsm8k_heldout.jsonl: GSM8K test problems whose text
  (whitespace-normalised) is not among ProcessBench's 3,400 problems, in file order: the first
  POOL_SIZE form the training pool, the next HELDOUT_SIZE the held-out comparison set, so the two are
  disjoint. Answers are normalised as `answer_format: gsm8k` does (the number after ####, no commas);
  unique_id is `gsm8k-test-<row of gsm8k_test.jsonl>`.
- sal_core/builtin/arith_train_pool.jsonl and arith_heldout.jsonl: every one-operation problem
  "What is $a + b$?" (a, b in 1..9), "What is $a \\times b$?" (2..9) and "What is $(a + b) - b$?"
  (1..9), 226 in all, less the two that the few-shot prompt of config/config.yaml solves as its
  examples (4 + 4, 10 - 3), ordered by the blake2b hash of their text: the first ARITH_HELDOUT are
  the held-out set, the rest (164) the training pool. These are problems SmolLM2-135M solves sometimes (about
  half the additions, a third of the products, few differences at temperature 0.8 with the
  embedded default's few-shot prompt), so its samples carry both step labels; on GSM8K it is right
  almost never. level is the operation (add, mul, sub); unique_id `arith-<op>-<a>-<b>`. Needs no
  ../shared (`--arith-only` writes just these).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

import yaml

from sal_core.pipeline.prepare_dataset import gsm8k_final_answer

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
BUILTIN = REPO / "sal_core" / "builtin"
SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")
PER_CLASS = 25
POOL_SIZE = 200
HELDOUT_SIZE = 100
ARITH_HELDOUT = 60


def normalise_text(text: str) -> str:
    """Problem text compared across datasets: whitespace runs collapsed, ends stripped."""
    return " ".join(text.split())


def id_hash(sample_id: str) -> str:
    return hashlib.blake2b(sample_id.encode(), digest_size=8).hexdigest()


def write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows to {path.relative_to(REPO)}")


def processbench_subset() -> tuple[list[dict], set[str]]:
    rows, problems = [], set()
    for split in SPLITS:
        samples = json.loads((SHARED / "processbench" / f"{split}.json").read_text())
        problems |= {normalise_text(s["problem"]) for s in samples}
        chosen = []
        for wrong in (True, False):
            chosen += sorted((s for s in samples if (s["label"] >= 0) == wrong), key=lambda s: id_hash(s["id"]))[
                :PER_CLASS
            ]
        # both classes mixed in id-hash order, so the first N of a split (`--limit N`) are a fair sample
        rows += [{"split": split, **s} for s in sorted(chosen, key=lambda s: id_hash(s["id"]))]
    return rows, problems


def gsm8k_sets(excluded: set[str]) -> tuple[list[dict], list[dict]]:
    eligible = []
    with (SHARED / "gsm8k_test.jsonl").open() as handle:
        for row, line in enumerate(handle):
            record = json.loads(line)
            if normalise_text(record["question"]) in excluded:
                continue
            answer = gsm8k_final_answer(record["answer"])
            eligible.append({"unique_id": f"gsm8k-test-{row}", "problem": record["question"].strip(), "answer": answer})
    print(f"{len(eligible)} GSM8K test problems are not in ProcessBench")
    return eligible[:POOL_SIZE], eligible[POOL_SIZE : POOL_SIZE + HELDOUT_SIZE]


def few_shot_problems() -> set[str]:
    """The problems the embedded default's few-shot prompt solves as examples ("Problem: ..." lines)."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    prompts = [model.get("system_prompt", "") for model in config["models"].values()]
    return {problem for prompt in prompts for problem in re.findall(r"^Problem: (.+)$", prompt, re.M)}


def arith_sets() -> tuple[list[dict], list[dict]]:
    """(training pool, held-out): every one-operation problem but the few-shot examples, split in
    text-hash order."""
    rows = []
    for a in range(1, 10):
        for b in range(1, 10):
            rows.append({"unique_id": f"arith-add-{a}-{b}", "problem": f"What is ${a} + {b}$?", "answer": a + b})
            rows.append({"unique_id": f"arith-sub-{a + b}-{b}", "problem": f"What is ${a + b} - {b}$?", "answer": a})
            if a > 1 and b > 1:
                problem = f"What is ${a} \\times {b}$?"
                rows.append({"unique_id": f"arith-mul-{a}-{b}", "problem": problem, "answer": a * b})
    examples = few_shot_problems()
    assert len(examples) == 2, examples
    rows = [{**r, "answer": str(r["answer"]), "level": r["unique_id"].split("-")[1]} for r in rows]
    rows = [r for r in rows if r["problem"] not in examples]
    rows.sort(key=lambda r: id_hash(r["problem"]))
    return rows[ARITH_HELDOUT:], rows[:ARITH_HELDOUT]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arith-only", action="store_true", help="write only the arithmetic sets (no ../shared)")
    args = parser.parse_args()
    pool, heldout = arith_sets()
    write_jsonl(pool, BUILTIN / "arith_train_pool.jsonl")
    write_jsonl(heldout, BUILTIN / "arith_heldout.jsonl")
    if args.arith_only:
        return
    subset, problems = processbench_subset()
    write_jsonl(subset, BUILTIN / "processbench" / "subset.jsonl")
    pool, heldout = gsm8k_sets(problems)
    write_jsonl(pool, BUILTIN / "gsm8k_train_pool.jsonl")
    write_jsonl(heldout, BUILTIN / "gsm8k_heldout.jsonl")


if __name__ == "__main__":
    main()
