"""A local HTTP server on 127.0.0.1 that serves files from memory, for the tests of `mtkit data fetch`.

No test touches the outside network: ``serve(files)`` starts a server on a free local port and yields the base
URL to pass as ``--base-url`` and the handler class, whose attributes steer the server (cut a transfer half-way,
ignore Range requests) and record the requests it got.
"""
from __future__ import annotations

import contextlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut_once: set[str] = set()  # names whose first GET is cut half-way
    cut_always: set[str] = set()
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        name = self.path.lstrip("/").split("/")[-1]
        type(self).requests.append((name, self.headers.get("Range")))
        body = type(self).files.get(name)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not type(self).ignore_range:
            start = int(range_header.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if name in type(self).cut_always or name in type(self).cut_once:
            type(self).cut_once.discard(name)
            self.wfile.write(payload[:len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)  # drop the connection mid-body
            return
        self.wfile.write(payload)


@contextlib.contextmanager
def serve(files: dict[str, bytes]):
    """Serve ``files`` (name -> bytes) under ``http://127.0.0.1:<port>/data/``; yields (base URL, handler class)."""
    class OneServer(Handler):
        pass

    OneServer.files, OneServer.cut_once, OneServer.cut_always, OneServer.requests = dict(files), set(), set(), []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), OneServer)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/data/", OneServer
    finally:
        httpd.shutdown()
        httpd.server_close()
