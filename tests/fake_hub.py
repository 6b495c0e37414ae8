"""A local stand-in for the Hugging Face Hub's HTTP API, on 127.0.0.1, that records every request.

It answers the routes huggingface_hub's model_info, list_repo_tree, hf_hub_download and
snapshot_download use, with the Hub's own headers (X-Repo-Commit, ETag, X-Error-Code): model files
served from a folder, a gated repository answering 401 GatedRepo without a token as the Hub does, an
unknown one 401 RepoNotFound. Point HF_ENDPOINT at `FakeHub.url` in a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    commit: str = field(default="")

    def __post_init__(self) -> None:
        digest = hashlib.sha1(b"".join(name.encode() + data for name, data in sorted(self.files.items())))
        self.commit = digest.hexdigest()


def blob_id(data: bytes) -> str:
    """A git blob id, as the Hub's ETag of a small file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class FakeHub:
    """The fake Hub: `add` repositories, `start`, read `requests` (method, path) afterwards."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        #: tokens without access to the gated repositories (as before their terms are accepted)
        self.refused_tokens: set[str] = set()
        self._server: ThreadingHTTPServer | None = None

    def add(
        self, name: str, folder: Path, gated: bool = False, extra: dict[str, bytes] | None = None, dataset: bool = False
    ) -> Repo:
        """Serve `folder`'s files (and `extra` ones) as model repository `name` (a dataset one with `dataset`)."""
        files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        key = f"datasets/{name}" if dataset else name
        self.repos[key] = Repo({**files, **(extra or {})}, gated)
        return self.repos[key]

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hub.answer(self, body=True)

            def do_HEAD(self) -> None:
                hub.answer(self, body=False)

            def do_POST(self) -> None:
                hub.answer(self, body=True)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        url = urlsplit(handler.path)
        path = unquote(url.path)
        self.requests.append((handler.command, path))
        parts = path.strip("/").split("/")
        if parts[:1] == ["api"] and len(parts) >= 4 and parts[1] in ("models", "datasets"):
            kind, repo_name, rest = parts[1], "/".join(parts[2:4]), parts[4:]
        elif parts[:1] == ["datasets"] and len(parts) >= 6 and parts[3] == "resolve":
            kind, repo_name, rest = "datasets", "/".join(parts[1:3]), parts[3:]
        elif len(parts) >= 5 and parts[2] == "resolve":
            kind, repo_name, rest = "models", "/".join(parts[:2]), parts[2:]
        else:
            return self._send(handler, 404, b"{}", {}, body)
        repo = self.repos.get(repo_name if kind == "models" else f"datasets/{repo_name}")
        if repo is None:
            return self._error(handler, 401, "RepoNotFound", f"Repository Not Found for url: {path}.", body)
        revision = rest[1] if len(rest) > 1 else "main"
        if revision not in ("main", repo.commit):
            return self._error(handler, 404, "RevisionNotFound", f"Invalid rev id: {revision}", body)
        if not rest or rest[0] == "revision":
            return self._json(handler, self._info(repo_name, repo), body)
        if rest[0] == "tree":
            return self._json(
                handler, self._tree(repo, "/".join(rest[2:]), "recursive=true" in url.query.lower()), body
            )
        if rest[0] == "paths-info":
            length = int(handler.headers.get("content-length") or 0)
            wanted = parse_qs(handler.rfile.read(length).decode()).get("paths", [])
            entries = [e for e in self._tree(repo, "", True) if e["path"] in wanted]
            return self._json(handler, entries, body)
        filename = "/".join(rest[2:])
        token = handler.headers.get("authorization", "").split(" ")[-1]
        if repo.gated and (not token or token in self.refused_tokens):
            message = f"Access to model {repo_name} is restricted. You must have access to it and be authenticated."
            return self._error(handler, 403 if token else 401, "GatedRepo", message, body)
        if filename not in repo.files:
            return self._error(handler, 404, "EntryNotFound", f"{filename} does not exist", body)
        data = repo.files[filename]
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{blob_id(data)}"'}
        return self._send(handler, 200, data, headers, body)

    @staticmethod
    def _tree(repo: Repo, under: str, recursive: bool) -> list[dict]:
        """The files (and, listed alone or recursively, the folders) under folder `under`."""
        prefix = f"{under}/" if under else ""
        entries: dict[str, dict] = {}
        for name, data in sorted(repo.files.items()):
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, {"type": "directory", "path": folder, "oid": blob_id(folder.encode())})
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries[name] = {"type": "file", "path": name, "size": len(data), "oid": blob_id(data)}
        return list(entries.values())

    @staticmethod
    def _info(name: str, repo: Repo) -> dict:
        siblings = [{"rfilename": n, "size": len(d), "blobId": blob_id(d)} for n, d in sorted(repo.files.items())]
        return {
            "id": name,
            "sha": repo.commit,
            "private": False,
            "gated": "manual" if repo.gated else False,
            "siblings": siblings,
        }

    def _json(self, handler: BaseHTTPRequestHandler, data: object, body: bool) -> None:
        self._send(handler, 200, json.dumps(data).encode(), {"Content-Type": "application/json"}, body)

    def _error(self, handler: BaseHTTPRequestHandler, status: int, code: str, message: str, body: bool) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        self._send(handler, status, json.dumps({"error": message}).encode(), headers, body)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict, body: bool) -> None:
        handler.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(data))}.items():
            handler.send_header(key, value)
        handler.end_headers()
        if body:
            handler.wfile.write(data)
