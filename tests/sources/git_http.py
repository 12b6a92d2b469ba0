"""A git smart-HTTP server for the tests: `git http-backend` (git's own CGI program) behind a small
threaded HTTP server on 127.0.0.1, serving the bare repositories under one folder, with HTTP Basic
authentication when a password is set. It counts the requests it served, so a test can show the
operator fetched over HTTP and not from the file system."""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

BACKEND = [os.environ.get("GIT", "git"), "http-backend"]


@dataclass
class GitHttp:
    root: Path
    url: str  # http://127.0.0.1:<port>
    requests: list[str] = field(default_factory=list)


def _handler(server: GitHttp, credentials: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet: the test reads `requests`
            return

        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _cgi(self) -> None:
            if credentials is not None:
                sent = self.headers.get("Authorization", "")
                if sent != "Basic " + base64.b64encode(credentials.encode()).decode():
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
            parts = urlsplit(self.path)
            server.requests.append(f"{self.command} {parts.path}")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            env = {
                **os.environ,
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": parts.path,
                "QUERY_STRING": parts.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(length),
                "REMOTE_ADDR": "127.0.0.1",
            }
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            done = subprocess.run(BACKEND, input=body, env=env, capture_output=True, check=False)
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status, headers = 200, []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


@contextlib.contextmanager
def git_http(root: Path, *, credentials: str | None = None) -> Iterator[GitHttp]:
    """Serve the bare repositories under `root` on a random 127.0.0.1 port (`credentials`: "user:password"
    required as HTTP Basic authentication)."""
    served = GitHttp(root, "")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(served, credentials))
    served.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
