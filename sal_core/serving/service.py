"""Service files and the uvicorn runner: how a server job tells its clients where it lives.

A server binds its port first (port 0 picks a free one), starts answering, and only then writes its
service file atomically (host, port, url, model, pid, Slurm job id, start time), so a client that
finds the file can connect at once. The file is removed at shutdown (SIGTERM or SIGINT), but only
if it still names this process: a server restarted into the same file keeps its own.
The seed wrote its file before vLLM had loaded the model and relied on its array jobs retrying.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sal_core.errors import ServerError
from sal_core.tables import write_text_atomic

log = logging.getLogger(__name__)

SNAPSHOT = re.compile(r"/snapshots/([0-9a-f]{40})(?:/|$)")


def model_revision(path: str) -> str | None:
    """The commit of a Hub checkout when `path` is a folder inside the Hub cache, else None."""
    match = SNAPSHOT.search(str(Path(path).expanduser().resolve()) if Path(path).exists() else path)
    return match.group(1) if match else None


def advertised_host(bind_host: str) -> str:
    """The host name clients should use: the machine's name when bound to all interfaces."""
    return socket.getfqdn() if bind_host in ("", "0.0.0.0", "::") else bind_host


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: any free port), bound before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {err}") from err
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def service_record(host: str, port: int, **fields: Any) -> dict[str, Any]:
    """What a service file holds: where the server is, what it serves, and which process it is."""
    public = advertised_host(host)
    return {
        "url": f"http://{public}:{port}",
        "host": public,
        "port": port,
        **fields,
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "job_id": os.environ.get("SLURM_JOB_ID"),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


#: a service file holds no key, but only its owner's jobs need to read where the server is
SERVICE_FILE_MODE = 0o600


def write_service_file(path: str | Path, record: dict[str, Any]) -> Path:
    return write_text_atomic(json.dumps(record, indent=2) + "\n", path, SERVICE_FILE_MODE)


def remove_service_file(path: str | Path, pid: int | None = None) -> None:
    """Delete the service file if it still belongs to process `pid` (any owner when pid is None)."""
    path = Path(path)
    try:
        owner = json.loads(path.read_text()).get("pid")
    except (OSError, ValueError, AttributeError):
        return
    if pid is None or owner == pid:
        path.unlink(missing_ok=True)


def run_server(app: Any, sock: socket.socket, service_file: str | Path | None, record: dict[str, Any]) -> None:
    """Serve `app` on the bound `sock` until SIGTERM/SIGINT; the service file exists while it answers."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                if service_file:
                    write_service_file(service_file, record)
                where = f" (service file {service_file})" if service_file else ""
                log.info("serving %s at %s%s", record.get("model"), record["url"], where)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            if service_file:
                remove_service_file(service_file, os.getpid())
            await super().shutdown(sockets)

    config = uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=10)
    try:
        Server(config).run(sockets=[sock])
    finally:
        if service_file:
            remove_service_file(service_file, os.getpid())
