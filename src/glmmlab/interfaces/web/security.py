"""Request guards: Host check, cross-site request protection, upload size limit.

``Guard`` is a plain ASGI middleware so that it runs before any body is read:

- **Host**: the ``Host`` header must name this machine (``127.0.0.1``, ``localhost``, ``[::1]``, the bound host or one
  of ``allowed_hosts``; ``"*"`` allows any, for a server deliberately bound to all interfaces). This stops
  DNS-rebinding pages from talking to the workbench.
- **Cross-site requests**: POST, PUT, PATCH and DELETE need the header ``X-CSRF-Token`` with the app's token (the page
  has it in ``<meta name="csrf-token">``; scripts get it from ``GET /api/token``, which a foreign page cannot read).
  An ``Origin`` header, when present, must be this server's own origin, and ``Sec-Fetch-Site: cross-site`` is refused.
- **Size**: a body larger than ``max_body_bytes`` is refused with 413, from ``Content-Length`` before reading, and while
  streaming for bodies without one. Only the upload endpoints (``UPLOAD_PATHS``) take bodies that large; every other
  body (JSON) is held to ``max_json_bytes``, since a parsed JSON document takes many times its size in memory.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any, Iterable
from urllib.parse import urlsplit

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CSRF_HEADER = "x-csrf-token"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}  # tests that use another name (testserver) pass it in allowed_hosts
# Sent with every response: no framing by other pages (clickjacking), no guessing of content types.
SECURITY_HEADERS = [(b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
                    (b"content-security-policy", b"frame-ancestors 'none'"),
                    (b"referrer-policy", b"same-origin")]
UPLOAD_PATHS = {"/api/datasets/import", "/api/projects/import"}
DEFAULT_MAX_JSON_BYTES = 8 << 20
DEFAULT_BODY_TIMEOUT = 60.0


class BodyTimeout(Exception):
    """Raised from ``receive`` when the body stops arriving for ``body_timeout`` seconds; the app answers 408."""

    def __init__(self, seconds: float):
        super().__init__(f"The request body stopped arriving (nothing for {seconds:g} s); send the request again.")


class BodyTooLarge(Exception):
    """Raised from ``receive`` when a streamed body passes the limit; the app turns it into a 413."""

    def __init__(self, limit: int, upload: bool = True):
        super().__init__(too_large_message(limit) if upload else json_too_large_message(limit))
        self.limit = limit


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def too_large_message(limit: int) -> str:
    return (f"The upload is larger than the limit of {human_bytes(limit)}. "
            "Split the file, or start the workbench with a larger upload limit.")


def json_too_large_message(limit: int) -> str:
    return f"The request body is larger than the limit of {human_bytes(limit)} for requests other than uploads."


def _host_only(host_header: str) -> str:
    host_header = host_header.strip().lower()
    if host_header.startswith("["):  # [::1]:8765
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    def __init__(self, app: Any, *, csrf_token: str, max_body_bytes: int, allowed_hosts: Iterable[str] = (),
                 max_json_bytes: int = DEFAULT_MAX_JSON_BYTES, body_timeout: float = DEFAULT_BODY_TIMEOUT):
        self.app = app
        self.csrf_token = csrf_token
        self.max_body_bytes = max_body_bytes
        self.max_json_bytes = min(max_json_bytes, max_body_bytes)
        self.body_timeout = float(body_timeout)
        self.allowed_hosts = {h.lower().strip("[]") for h in allowed_hosts} | LOCAL_HOSTS

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        receive = self._patient_receive(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        if "*" not in self.allowed_hosts and _host_only(host) not in self.allowed_hosts:
            await _send_error(send, 400, f"Host '{host}' is not allowed; open the workbench at 127.0.0.1.")
            return

        method = scope["method"].upper()
        if method in UNSAFE_METHODS:
            problem = self._cross_site_problem(headers, host, scope.get("scheme", "http"))
            if problem:
                await _send_error(send, 403, problem)
                return

        upload = scope.get("path", "") in UPLOAD_PATHS
        limit = self.max_body_bytes if upload else self.max_json_bytes
        length = headers.get("content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                await _send_error(send, 400, "The Content-Length header is not a number.")
                return
            if too_big:
                await _send_error(send, 413, too_large_message(limit) if upload else json_too_large_message(limit))
                return

        if not upload and method in UNSAFE_METHODS:
            # JSON bodies are small: read them here, so one that is too large is refused before the app parses it
            body, more = bytearray(), True
            while more:
                try:
                    message = await receive()
                except BodyTimeout as exc:
                    await _send_error(send, 408, str(exc))
                    return
                if message["type"] != "http.request":
                    await self.app(scope, receive, send)
                    return
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > limit:
                    await _send_error(send, 413, json_too_large_message(limit))
                    return
            delivered = False

            async def replay() -> dict:
                nonlocal delivered
                if not delivered:
                    delivered = True
                    return {"type": "http.request", "body": bytes(body), "more_body": False}
                return await receive()

            await self.app(scope, replay, send)
            return

        seen = 0

        async def counting_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit, upload)
            return message

        await self.app(scope, counting_receive, send)

    def _patient_receive(self, receive: Any) -> Any:
        """``receive`` that gives up (BodyTimeout) when the body stalls; after the body, it waits as long as needed
        (the app listens for the client's disconnect while it streams a response)."""
        done = False
        seconds = self.body_timeout

        async def receiving() -> dict:
            nonlocal done
            if done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), seconds)
            except asyncio.TimeoutError:
                raise BodyTimeout(seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        return receiving

    def _cross_site_problem(self, headers: dict[str, str], host: str, scheme: str) -> str | None:
        if headers.get("sec-fetch-site") == "cross-site":
            return "Cross-site requests are not allowed."
        origin = headers.get("origin")
        if origin is not None and origin != "null":
            parts = urlsplit(origin)
            if parts.netloc.lower() != host.lower():
                return f"Requests from {origin} are not allowed."
        elif origin == "null":
            return "Requests from an opaque origin are not allowed."
        token = headers.get(CSRF_HEADER, "")
        if not token or not hmac.compare_digest(token, self.csrf_token):
            return ("Missing or wrong X-CSRF-Token header. Reload the page; scripts get the token from "
                    "GET /api/token.")
        return None


def _with_security_headers(send: Any) -> Any:
    async def sending(message: dict) -> None:
        if message["type"] == "http.response.start":
            present = {k.lower() for k, _ in message.get("headers", [])}
            message = dict(message, headers=list(message.get("headers", []))
                           + [(k, v) for k, v in SECURITY_HEADERS if k not in present])
        await send(message)

    return sending


async def _send_error(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
