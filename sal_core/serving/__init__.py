"""Long-lived model servers, so that many small shard jobs share one loaded model.

- `sal serve-prm` (prm_server.py): any configured PRM behind an HTTP scoring API;
  `type: server` PRMs (sal_core/prm/server.py) call it, or vLLM's pooling API.
- `sal serve` (generation_server.py): the project's in-process generation backend behind the
  OpenAI completions API; `backend: openai` (sal_core/backends/openai_backend.py) calls it, or any
  other OpenAI-compatible server such as `vllm serve`.

Both servers merge requests that arrive together into one model call (batching.py), answer
`GET /health`, and write a service file once they listen (service.py), the way the seed's
`scripts/start_prm_server.py` (hotncold) announced its vLLM PRM server to its array jobs.
"""
