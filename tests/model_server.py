"""Local stand-ins, on 127.0.0.1, for what the init container talks to in the pod VM.

- the confidential data hub's resource endpoint, `GET /cdh/resource/<repo>/<type>/<tag>` (guest-components
  api-server-rest; the path KServe's CDHSecretResolver builds, kserve/kserve commit 2f9cbe81
  python/storage/kserve_storage/confidential/cdh_client.py): the resource bytes with 200, or an error
  status when KBS does not release it;
- a blob container: `GET /<container>/<object>` streams a file of a local directory; with a SAS set,
  a request without exactly that query string gets 403, as Azure Storage answers.
"""

from __future__ import annotations

import socket
import struct
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Served:
    resources: dict[str, bytes] = field(default_factory=dict)
    """`kbs:///repo/type/tag` -> resource value."""
    blobs: dict[str, Path] = field(default_factory=dict)
    """Container name -> local directory."""
    sas: str | None = None
    reset: dict[str, int] = field(default_factory=dict)
    """Object name -> bytes sent before the store resets the connection (a download cut by the network)."""
    requests: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        url = urllib.parse.urlsplit(self.path)
        self.served.requests.append(url.path)
        parts = url.path.split("/")
        if url.path.startswith("/cdh/resource/") and len(parts) == 6:
            value = self.served.resources.get("kbs:///" + "/".join(parts[3:]))
            if value is None:
                return self._status(500, b"rpc status: resource not released")
            return self._body(value)
        container = self.served.blobs.get(parts[1]) if len(parts) > 2 else None
        if container is None:
            return self._status(404, b"ContainerNotFound")
        if self.served.sas is not None and url.query != self.served.sas:
            return self._status(403, b"AuthenticationFailed")
        name = urllib.parse.unquote("/".join(parts[2:]))
        path = container / name
        if not path.is_file():
            return self._status(404, b"BlobNotFound")
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        if name in self.served.reset:
            self.wfile.write(path.read_bytes()[: self.served.reset[name]])
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
            self.rfile.close()  # the socket's only file (wfile writes to it directly): the socket closes with it
            self.connection.close()
            return
        with open(path, "rb") as handle:  # from the page cache to the socket in the kernel: a remote store's CPU is not the reader's
            try:
                self.connection.sendfile(handle)
            except (BrokenPipeError, ConnectionResetError):  # the reader stopped early (a failing run): a store says nothing
                pass

    def _body(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, message: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(message)))
        self.end_headers()
        self.wfile.write(message)


@contextmanager
def serve(served: Served) -> Iterator[str]:
    """Serve `served` on 127.0.0.1 (a free port) and yield the base URL."""
    handler = type("Handler", (_Handler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
