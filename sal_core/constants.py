"""Names the whole project agrees on: search methods, PRM types, engines, step-score aggregations,
dtypes, prepared model sources, votes, dataset options and ProcessBench's splits.

Code imports them from here; workflow/schemas/config.schema.yaml repeats them as enums (JSON schema
cannot import), and tests/test_constants.py checks that the two agree.
"""

from __future__ import annotations

METHODS = ("best_of_n", "beam_search", "dvts", "particle_filtering")
#: methods whose search is guided step by step by a PRM (they need one in the generate job)
GUIDED_METHODS = ("beam_search", "dvts", "particle_filtering")
PARTICLE_FILTERING = "particle_filtering"
#: the finish reason of a particle that took `num_iterations` steps without finishing (a token limit and a
#: context prune are "length")
STEP_LIMIT = "step_limit"
#: methods whose run at n is not a subset of a run at a larger n: one run per n, evaluated at its own n only
ONE_RUN_PER_N = ("beam_search", PARTICLE_FILTERING)
#: `verifier`: no model, exact arithmetic (sal_core/prm/verifier.py); `server`: any of the others behind
#: `sal serve-prm`, or Qwen2.5-Math-PRM behind `vllm serve`
PRM_TYPES = ("rlhflow", "math-shepherd", "skywork", "qwen2.5-math", "trl", "verifier", "server")
#: `openai`: any OpenAI-compatible completions server (`vllm serve`, `sal serve`)
BACKENDS = ("transformers", "vllm", "openai")
#: what a `type: server` PRM speaks: `sal serve-prm`'s API, or vLLM's pooling API
SERVER_APIS = ("sal", "vllm-pooling")
#: how a PRM cuts a completion into scored steps and lays them out: the project's (empty steps dropped,
#: each family's model-card layout) or search-and-learn's (sal_core/prm/base.py, docs/search.md)
STEP_LAYOUTS = ("default", "sal")
#: how a step-wise search sends a partial solution again (sal_core.search.continuation): re-encoding
#: prompt + text, as search-and-learn does (the default), or continuing from the ids generated so far
CONTINUATIONS = ("reencode", "exact")
#: how a completion's step scores become one score (search ranking and naive / weighted votes)
AGGREGATIONS = ("last", "min", "prod")
DTYPES = ("auto", "float32", "bfloat16", "float16")
#: model folders `sal prepare-model` builds without network access, into resources/models/<source>
PREPARED_SOURCES = ("smollm2-135m-instruct", "tiny-random")
#: the votes over one subsample of completions; pass@k (an oracle) is reported beside them
VOTES = ("majority", "naive", "weighted")
PASS_AT_K = "pass@k"
#: how `sal evaluate` estimates accuracy: ours (random subsamples, fractional ties) or search-and-learn's
PROTOCOLS = ("default", "sal")
DATASET_SOURCES = ("builtin", "local", "hub")
ANSWER_FORMATS = ("plain", "gsm8k")
#: ProcessBench's splits (Zheng et al., 2024), in the paper's order
PROCESSBENCH_SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")
#: the columns of a problems table, in order: every dataset is normalised to them
PROBLEM_COLUMNS = ("problem_id", "problem", "answer", "level")

#: the response header in which a server says how many items (prompts, completions, pooling inputs) it
#: works on at once: `sal serve` / `sal serve-prm` their max_batch, a `vllm serve` we start its
#: max_num_seqs (serving/vllm_auth.py); clients split twice that among themselves (backends/server_share.py)
CAPACITY_HEADER = "x-sal-capacity"

#: the text that ends a step: searches stop at it, PRMs split completions at it (sal_core.prm.base)
STEP_SEPARATOR = "\n\n"
