"""Audit collectors the forwarding tests start on loopback: a syslog listener (RFC 6587 octet
counting over TCP or TLS) and an HTTPS collector (JSON lines, a bearer token). Both can be
stopped, crashed mid-stream and restarted on the same port, as a real collector can."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import ssl
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from entrasync.sim.certs import TlsFiles

# RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG
_SYSLOG = re.compile(
    r"<(?P<pri>\d{1,3})>(?P<version>1) (?P<at>\S+) (?P<host>\S+) (?P<app>\S+) (?P<procid>\S+) "
    r"(?P<msgid>\S+) \[(?P<sdid>\S+)(?P<params>(?: \w+=\"(?:[^\"\\\]]|\\.)*\")*)\] (?P<msg>.*)",
    re.DOTALL,
)
_PARAM = re.compile(r' (\w+)="((?:[^"\\\]]|\\.)*)"')


@dataclass(frozen=True)
class SyslogMessage:
    pri: int
    at: str
    host: str
    app: str
    msgid: str
    sd_id: str
    params: dict[str, str]
    record: dict[str, Any]


def parse_syslog(message: bytes) -> SyslogMessage:
    """One RFC 5424 message; AssertionError when it is not one."""
    text = message.decode("utf-8")  # UTF-8 only in PARAM-VALUEs: MSG is ASCII JSON
    match = _SYSLOG.fullmatch(text)
    assert match, f"not an RFC 5424 message: {text[:200]!r}"
    params = {k: re.sub(r"\\(.)", r"\1", v) for k, v in _PARAM.findall(match["params"])}
    return SyslogMessage(
        pri=int(match["pri"]),
        at=match["at"],
        host=match["host"],
        app=match["app"],
        msgid=match["msgid"],
        sd_id=match["sdid"],
        params=params,
        record=json.loads(match["msg"].encode("ascii")),  # ASCII: no BOM needed
    )


def read_frames(conn: socket.socket) -> Iterator[bytes]:
    """Octet-counted frames until the peer ends the stream."""
    buffer = b""
    while True:
        while b" " not in buffer:
            chunk = conn.recv(65536)
            if not chunk:
                assert not buffer, f"stream ended inside a frame header: {buffer!r}"
                return
            buffer += chunk
        length, _, buffer = buffer.partition(b" ")
        assert length.isdigit(), f"not octet counting: {length[:20]!r}"
        while len(buffer) < int(length):
            chunk = conn.recv(65536)
            assert chunk, "stream ended inside a frame"
            buffer += chunk
        yield buffer[: int(length)]
        buffer = buffer[int(length) :]


@dataclass
class SyslogCollector:
    """`messages` holds what was received, `connections` the seqs per connection.
    `crash_after = N` makes the next connection read N messages and then die with a reset
    (and the listener with it), as a collector killed mid-stream does."""

    tls: TlsFiles | None = None
    port: int = 0
    crash_after: int | None = None
    ragged_ends: int = 0  # TLS streams that ended without a close_notify
    messages: list[SyslogMessage] = field(default_factory=list)
    connections: list[list[int]] = field(default_factory=list)
    _listener: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"syslog+{'tls' if self.tls else 'tcp'}://127.0.0.1:{self.port}"

    def start(self) -> SyslogCollector:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(8)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._listener is not None:
            # shutdown wakes the accept() blocked in the other thread (close alone does not,
            # and the kernel would go on accepting connections)
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None

    def seqs(self) -> list[int]:
        return [int(m.params["seq"]) for m in self.messages]

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        conn = raw
        if self.tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            try:
                # A TLS stream must end with the sender's close_notify (RFC 5425 section 4.4):
                # an end without one raises here instead of reading as a clean end.
                conn = context.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
            except (ssl.SSLError, OSError):
                raw.close()
                return
        with self._lock:
            seqs: list[int] = []
            self.connections.append(seqs)
            crash_after, self.crash_after = self.crash_after, None
        try:
            for frame in read_frames(conn):
                if crash_after is not None and len(seqs) >= crash_after:
                    self._crash(raw)
                    return
                message = parse_syslog(frame)
                with self._lock:
                    self.messages.append(message)
                    seqs.append(int(message.params["seq"]))
        except ssl.SSLEOFError:
            self.ragged_ends += 1
        except OSError:
            pass
        conn.close()  # after the sender's end of stream: what it waits for

    def _crash(self, raw: socket.socket) -> None:
        self.stop()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()  # a reset: what the sender sees when a collector dies


@dataclass
class HttpsCollector:
    """JSON lines over HTTPS. `answers` are status codes (or (code, content type, body))
    served before the collector starts accepting; `token` is the bearer token it wants."""

    tls: TlsFiles
    token: str | None = None
    scheme: str = "Bearer"
    answers: list[Any] = field(default_factory=list)
    max_body: int | None = None  # larger requests get 413, as a collector's size limit does
    echo: bool = False  # a refusal repeats the request line and headers, as some proxies do
    requests: list[dict[str, Any]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def url(self, path: str = "/ingest") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def records(self) -> list[dict[str, Any]]:
        accepted = [r for r in self.requests if r["status"] == 200]
        return [json.loads(line) for r in accepted for line in r["body"].splitlines()]

    def start(self) -> HttpsCollector:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status, kind, payload = collector._answer(self.headers.get("Authorization"))
                if collector.max_body is not None and len(body) > collector.max_body:
                    status, kind, payload = 413, "application/json", b'{"text":"too large"}'
                if collector.echo and status >= 400:
                    said = f"{status} for POST {self.path} with {self.headers.get('Authorization')}"
                    payload = json.dumps({"text": "x" * 150 + said}).encode()
                collector.requests.append(
                    {
                        "path": self.path,
                        "status": status,
                        "authorization": self.headers.get("Authorization"),
                        "content_type": self.headers.get("Content-Type"),
                        "body": body.decode("utf-8"),
                    }
                )
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, authorization: str | None) -> tuple[int, str, bytes]:
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, int):
                return answer, "text/html", b"<html><body>Service Unavailable</body></html>"
            code, kind, body = answer
            return int(code), str(kind), str(body).encode("utf-8")
        if self.token is not None and authorization != f"{self.scheme} {self.token}":
            return 401, "application/json", b'{"text":"Invalid token","code":4}'
        return 200, "application/json", b'{"text":"Success","code":0}'
