"""`type: server` PRMs: step scores from a PRM server instead of weights loaded in the job.

Two APIs (`api` setting):
- `sal`: `sal serve-prm` (sal_core/serving/prm_server.py), any PRM family; problems and completions go
  over the wire and the server runs the family's own code, so scores equal in-process scores.
- `vllm-pooling`: `vllm serve Qwen/Qwen2.5-Math-PRM-7B` (as the seed's prm-toolkit used it). The client
  builds the Qwen2.5-Math-PRM input exactly as sal_core/prm/qwen_math.py does (chat template, steps
  joined by "<extra_0>", truncation to `max_length`) from the tokenizer at `path`, sends token ids to
  POST /pooling with task "token_classify", and reads P(good) at each step tag from the answer: one
  [p_bad, p_good] row per step-tag token (vLLM 0.33's STEP pooling for Qwen2ForProcessRewardModel,
  softmax applied), or one row per token. The seed sent text with a hand-written
  "<im_start>" template, which is not the model's "<|im_start|>" chat format.

At start the client checks that the server serves `served_model` (and `revision`, when the server
reports one), so a job never scores with another model than its settings say. Completions are sent
in chunks, as many at a time as the job's share of the server's capacity (backends/server_share.py);
the server merges concurrent chunks into batches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sal_core.backends.http_client import JsonClient, resolve_endpoint, wait_until_ready
from sal_core.errors import ServerError
from sal_core.prm.base import PRM, Scored, scored_steps
from sal_core.settings.endpoint import SERVERS_KEY, ServerLocation
from sal_core.settings.jobs import PRMSettings

log = logging.getLogger(__name__)

WHO = "prm server"
#: completions per request to `sal serve-prm` (the server's own limit may be lower)
SAL_CHUNK = 256
#: inputs per request to vLLM's /pooling
POOLING_CHUNK = 64
#: vLLM's pooling task for per-token (here: per step tag) classification
POOLING_TASK = "token_classify"


def run_chunks(chunks: Sequence[Any], send: Callable[[Any], Any], in_flight: int) -> list[Any]:
    """`send(chunk)` for every chunk, `in_flight` at a time, results in chunk order; the first
    failure cancels the chunks not yet sent and is raised."""
    if len(chunks) <= 1 or in_flight == 1:
        return [send(chunk) for chunk in chunks]
    with ThreadPoolExecutor(max_workers=min(in_flight, len(chunks))) as pool:
        futures = [pool.submit(send, chunk) for chunk in chunks]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class ServerPRM(PRM):
    """What both APIs share: the endpoint, the HTTP client and the served-model check at start."""

    def __init__(self, settings: PRMSettings, location: ServerLocation) -> None:
        settings.validate("prm")
        self.settings, self.location = settings, location
        self.endpoint = resolve_endpoint(location, f"{SERVERS_KEY}.{settings.name}", WHO)
        self.http = JsonClient(self.endpoint, location, WHO)
        self.check_server()

    @property
    def name(self) -> str:
        return self.http.name

    def check_server(self) -> None:
        raise NotImplementedError

    def mismatch(self, served: Any) -> ServerError:
        return ServerError(f"{self.name}: serves {served!r}, but prm.served_model is {self.settings.served_model!r}")

    def malformed(self, what: str) -> ServerError:
        return ServerError(f"{self.name}: answered malformed scores ({what})")


class SalServerPRM(ServerPRM):
    """Client of `sal serve-prm`'s POST /v1/score."""

    def check_server(self) -> None:
        health = wait_until_ready(self.http, self.location.wait)
        model = health.get("model") if isinstance(health, dict) else None
        if not isinstance(model, dict) or "name" not in model:
            raise ServerError(f"{self.name}: /health does not describe a model; is this a `sal serve-prm` server?")
        if model["name"] != self.settings.served_model:
            raise self.mismatch(model["name"])
        #: the served PRM's family and step layout decide which steps it scores
        self.family, layout = str(model.get("type")), model.get("step_layout", "default")
        if layout != self.settings.step_layout:
            raise ServerError(
                f"{self.name}: scores with step_layout {layout!r}, but prm.step_layout is {self.settings.step_layout!r}"
            )
        check_revision(self.name, self.settings.revision, model.get("revision"))
        info = self.http.get("/v1/info")
        limit = info.get("limits", {}).get("max_request_items") if isinstance(info, dict) else None
        self.chunk = min(SAL_CHUNK, limit) if isinstance(limit, int) and limit > 0 else SAL_CHUNK
        log.info("scoring with %s (%s %s)", self.name, model.get("type"), model.get("path"))

    def score_with_tokens(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> Scored:
        if len(problems) != len(completions):
            raise ValueError(f"{len(problems)} problems but {len(completions)} lists of completions")
        pairs = [(i, j) for i, comps in enumerate(completions) for j in range(len(comps))]
        chunks = [pairs[s : s + self.chunk] for s in range(0, len(pairs), self.chunk)]
        scores: list[list[list[float]]] = [[[] for _ in comps] for comps in completions]
        read = [[0] * len(comps) for comps in completions]

        def send(chunk: list[tuple[int, int]]) -> None:
            groups: dict[int, list[int]] = {}
            for i, j in chunk:
                groups.setdefault(i, []).append(j)
            request = {
                "model": self.settings.served_model,
                "problems": [problems[i] for i in groups],
                "completions": [[completions[i][j] for j in js] for i, js in groups.items()],
            }
            answer = self.http.post("/v1/score", request)
            got = answer.get("scores") if isinstance(answer, dict) else None
            tokens = answer.get("tokens") if isinstance(answer, dict) else None
            if not isinstance(got, list) or len(got) != len(groups):
                raise self.malformed(f"expected scores for {len(groups)} problems")
            if not isinstance(tokens, list) or len(tokens) != len(groups):
                raise self.malformed(f"expected the tokens read for {len(groups)} problems")
            for (i, js), rows, counts in zip(groups.items(), got, tokens, strict=True):
                if not isinstance(rows, list) or len(rows) != len(js):
                    raise self.malformed(f"expected {len(js)} completions of problem {i}")
                if not isinstance(counts, list) or len(counts) != len(js) or not all(type(c) is int for c in counts):
                    raise self.malformed(f"expected {len(js)} token counts for problem {i}")
                for j, row, count in zip(js, rows, counts, strict=True):
                    steps = scored_steps(completions[i][j], self.family, self.settings.step_layout)
                    scores[i][j] = self.checked(row, len(steps))
                    read[i][j] = count

        run_chunks(chunks, send, self.http.share.in_flight(self.chunk))
        return Scored(scores, read)

    def checked(self, row: Any, n_steps: int) -> list[float]:
        """One completion's step scores: n_steps finite floats in [0, 1]."""
        if not isinstance(row, list) or len(row) != n_steps:
            raise self.malformed(f"expected {n_steps} step scores, got {str(row)[:80]}")
        if not all(isinstance(x, int | float) and math.isfinite(x) and 0.0 <= x <= 1.0 for x in row):
            raise self.malformed(f"step scores must be numbers in [0, 1], got {str(row)[:80]}")
        return [float(x) for x in row]


def check_revision(name: str, expected: str | None, served: str | None) -> None:
    """A configured revision must match the server's; a server that reports none cannot be checked."""
    if expected is None:
        return
    if served is None:
        log.warning("%s reports no model revision; cannot check revision %s", name, expected)
    elif served != expected:
        raise ServerError(f"{name}: serves revision {served!r}, but the settings ask for revision {expected!r}")


class VLLMPoolingPRM(ServerPRM):
    """Client of vLLM's POST /pooling for Qwen2.5-Math-PRM (see the module docstring)."""

    def check_server(self) -> None:
        from sal_core.prm.hf import load_tokenizer
        from sal_core.prm.qwen_math import QwenMathPRM

        wait_until_ready(self.http, self.location.wait)
        listed = self.http.get("/v1/models")
        cards = listed.get("data") if isinstance(listed, dict) else None
        if not isinstance(cards, list):
            raise ServerError(f"{self.name}: /v1/models is not an OpenAI model list")
        served = [card.get("id") for card in cards if isinstance(card, dict)]
        if self.settings.served_model not in served:
            raise self.mismatch(served[0] if len(served) == 1 else served)
        card = cards[served.index(self.settings.served_model)]
        check_revision(self.name, self.settings.revision, card.get("revision"))
        self.check_length(card.get("max_model_len"))
        layout = PRMSettings(
            name=self.settings.name,
            type="qwen2.5-math",
            path=self.settings.path,
            max_length=self.settings.max_length,
            step_layout=self.settings.step_layout,
        )
        # the in-process family's input builder, without its model: one definition of the input layout
        self.layout = QwenMathPRM(layout, load_tokenizer(layout), None, "cpu")

    def check_length(self, served: Any) -> None:
        """The entry's `max_length` must fit the server's context: vLLM answers a longer input with HTTP
        400 where the in-process family truncates it (and fills the unscored steps), so the entry's
        limit is the one that truncates, and it may not exceed the server's."""
        if isinstance(served, int) and served < self.settings.max_length:
            raise ServerError(
                f"{self.name}: prms.{self.settings.name}.max_length is {self.settings.max_length}, more than the "
                f"{served} tokens the server takes (its --max-model-len): set max_length: {served}, or serve longer"
            )

    def score_with_tokens(self, problems: Sequence[str], completions: Sequence[Sequence[str]]) -> Scored:
        from sal_core.prm.hf import fill_steps

        jobs, read = self.layout.encode_all(problems, completions)
        scores: list[list[list[float]]] = [[[] for _ in comps] for comps in completions]
        chunks = [jobs[s : s + POOLING_CHUNK] for s in range(0, len(jobs), POOLING_CHUNK)]
        for chunk, probs in zip(
            chunks, run_chunks(chunks, self.send, self.http.share.in_flight(POOLING_CHUNK)), strict=True
        ):
            for (i, j, n_steps, _), got in zip(chunk, probs, strict=True):
                scores[i][j] = fill_steps(got, n_steps)
        return Scored(scores, read)

    def send(self, chunk: list[tuple[int, int, int, Any]]) -> list[list[float]]:
        """P(good) at the step tags of each encoding in `chunk`, from one /pooling request."""
        encoded = [job[3] for job in chunk]
        answer = self.http.post("/pooling", pooling_request(self.settings.served_model, encoded))
        try:
            return pooled_step_probs(answer, encoded, self.layout.tag_id)
        except ValueError as err:
            raise self.malformed(str(err)) from None


def pooling_request(model: str | None, encoded: Sequence[Any]) -> dict[str, Any]:
    """vLLM's /pooling request body (PoolingCompletionRequest) for token-id inputs."""
    return {"model": model, "input": [e.input_ids for e in encoded], "task": POOLING_TASK}


def pooled_step_probs(answer: Any, encoded: Sequence[Any], tag_id: int) -> list[list[float]]:
    """P(good) at each encoding's step positions from a /pooling answer (PoolingResponse): rows per
    step-tag token (vLLM's STEP pooler) or per token; ValueError naming what is wrong."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, list) or len(data) != len(encoded):
        raise ValueError(f"expected {len(encoded)} pooling results")
    items = sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
    probs = []
    for item, enc in zip(items, encoded, strict=True):
        rows = item.get("data") if isinstance(item, dict) else None
        if not isinstance(rows, list):
            raise ValueError("a pooling result without `data`")
        ids = enc.input_ids
        if len(rows) == len(ids):
            picked = [rows[p] for p in enc.positions]
        else:
            tags = [k for k, token in enumerate(ids) if token == tag_id]
            if len(rows) != len(tags):
                raise ValueError(f"{len(rows)} rows for an input of {len(ids)} tokens with {len(tags)} step tags")
            index = {position: n for n, position in enumerate(tags)}
            picked = [rows[index[p]] for p in enc.positions]
        probs.append([good_probability(row) for row in picked])
    return probs


def good_probability(row: Any) -> float:
    """P(good) from a [bad, good] row: probabilities as vLLM's step pooler returns them, or logits."""
    if not isinstance(row, list) or len(row) != 2 or not all(isinstance(x, int | float) for x in row):
        raise ValueError(f"expected a [p_bad, p_good] row, got {str(row)[:80]}")
    bad, good = float(row[0]), float(row[1])
    if 0.0 <= bad <= 1.0 and 0.0 <= good <= 1.0 and abs(bad + good - 1.0) < 1e-3:
        return good
    return 1.0 / (1.0 + math.exp(bad - good))


def load_server_prm(settings: PRMSettings, location: ServerLocation) -> ServerPRM:
    """The client for `settings.api`, connected to the server at `location` and checked against it."""
    if settings.api == "vllm-pooling":
        return VLLMPoolingPRM(settings, location)
    return SalServerPRM(settings, location)
