"""A local double of the IAM Service Account Credentials API's `signBlob`, holding an RSA key.

    POST /v1/projects/-/serviceAccounts/{email}:signBlob   {"payload": base64}  ->  {"keyId", "signedBlob"}

(https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/signBlob). It
enforces what the service enforces: a Bearer access token it issued (401 UNAUTHENTICATED), the one account
it signs for (403 PERMISSION_DENIED, which is also what a caller without roles/iam.serviceAccountTokenCreator
gets), a base64 payload (400 INVALID_ARGUMENT) and a per-minute quota (429 RESOURCE_EXHAUSTED). Errors use
Google's JSON error shape. Every signBlob answer waits `latency` seconds, as a round trip to Google would.

Access tokens come from it too, either way `google.auth.default()` finds them: as the metadata server that
hands a Cloud Run instance its token (`/computeMetadata/v1/...`, with GCE_METADATA_HOST and GCE_METADATA_IP
naming the double: what the signing benchmark uses), or from the OAuth 2.0 token endpoint (`/token`,
JWT-bearer grant) named by the Application Default Credentials file it writes (`write_adc`: what the tests
use, since google-auth reads GCE_METADATA_HOST only once per process).

Signatures are RSASSA-PKCS1-v1_5 SHA-256 with its key: give it the local stack's signing key and its signed
URLs verify exactly like locally signed ones.

Tests run it in a thread (`IamDouble(...).start()`); the signing benchmark runs it as a child process:
    python scripts/iam_double.py --port P --key-file K --email E --adc-file F [--latency-ms 50]
`GET /_double/stats` -> {"sign_calls", "token_calls"} (the double's own endpoint, not Google's).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SIGN_PATH_PREFIX = "/v1/projects/-/serviceAccounts/"


def _error(status: int, google_status: str, message: str) -> tuple[int, dict[str, Any]]:
    return status, {"error": {"code": status, "message": message, "status": google_status}}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 drops concurrent connects (1 s SYN retries)


class IamDouble:
    """signBlob and a token endpoint on 127.0.0.1. `plan` holds HTTP statuses to answer signBlob calls with
    next, one per call (e.g. [503, 503] or [429]); `deny` refuses every call with 403."""

    def __init__(self, key_file: str | Path, email: str, latency: float = 0.0, port: int = 0,
                 quota_per_minute: int | None = None) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        pem = Path(key_file).read_bytes()
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):  # signBlob answers RSA-SHA256 signatures (service-account keys)
            raise ValueError(f"the service-account key must be an RSA key, not {type(key).__name__}")
        self.key = key
        public = self.key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = hashlib.sha1(public).hexdigest()  # noqa: S324 - an identifier, like IAM's key ids
        self.email, self.latency, self.quota_per_minute = email, latency, quota_per_minute
        self.plan: list[int] = []
        self.deny = False
        self.sign_calls = 0      # signBlob calls answered with a signature
        self.token_calls = 0
        self.lock = threading.Lock()
        self._recent: deque[float] = deque()  # times of accepted signBlob calls, for the quota
        self._tokens: dict[str, float] = {}   # issued access token -> expiry (monotonic)
        self.server = _Server(("127.0.0.1", port), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> IamDouble:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def write_adc(self, path: str | Path) -> Path:
        """An Application Default Credentials file (a service-account key of the runtime identity, with this
        double as its token endpoint), so `google.auth.default()` gets its tokens here. The key is the
        double's own: the file exists only in tests and benchmarks."""
        from cryptography.hazmat.primitives import serialization

        path = Path(path)
        pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode()
        path.write_text(json.dumps({
            "type": "service_account", "project_id": "zipkku-local", "private_key_id": self.key_id,
            "private_key": pem, "client_email": self.email, "client_id": "1", "token_uri": f"{self.url}/token",
        }))
        path.chmod(0o600)
        return path

    def accepts_token(self, token: str) -> bool:
        """Whether `token` is an access token this double issued and has not expired: other doubles of Google
        APIs (tests/doubles.py) check the caller's token with it, as Google's front ends check its tokens."""
        with self.lock:
            return self._tokens.get(token, 0) > time.monotonic()

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (as when an access token expires)."""
        with self.lock:
            self._tokens.clear()

    # --- the API -----------------------------------------------------------------------------------------

    def sign_blob(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        token = (headers.get("authorization") or "").removeprefix("Bearer ").strip()
        with self.lock:
            valid = self._tokens.get(token, 0) > time.monotonic()
        if not valid:
            return _error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected "
                          "OAuth 2 access token, login cookie or other valid authentication credential.")
        email = urllib.parse.unquote(path[len(SIGN_PATH_PREFIX):].split(":", 1)[0])
        time.sleep(self.latency)
        with self.lock:
            planned = self.plan.pop(0) if self.plan else None
            if planned is None and self.quota_per_minute is not None:
                now = time.monotonic()
                while self._recent and self._recent[0] < now - 60:
                    self._recent.popleft()
                if len(self._recent) >= self.quota_per_minute:
                    planned = 429
                else:
                    self._recent.append(now)
        if planned == 429:
            return _error(429, "RESOURCE_EXHAUSTED", "Quota exceeded for quota metric 'Sign blob requests' and "
                          "limit 'Sign blob requests per minute' of service 'iamcredentials.googleapis.com'.")
        if planned is not None and planned >= 500:
            return _error(planned, "UNAVAILABLE" if planned == 503 else "INTERNAL",
                          "The service is currently unavailable." if planned == 503 else "Internal error encountered.")
        if planned == 403 or self.deny or email != self.email:
            return _error(403, "PERMISSION_DENIED", "Permission 'iam.serviceAccounts.signBlob' denied on "
                          f"resource (or it may not exist): projects/-/serviceAccounts/{email}")
        try:
            payload = base64.b64decode(json.loads(body)["payload"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            return _error(400, "INVALID_ARGUMENT", "Invalid value at 'payload' (TYPE_BYTES): not base64.")
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        signature = self.key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        with self.lock:
            self.sign_calls += 1
        return 200, {"keyId": self.key_id, "signedBlob": base64.b64encode(signature).decode("ascii")}

    def token(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """OAuth 2.0 JWT-bearer grant (what service-account credentials send): the assertion must be signed
        with the account's key, for Google's token audience (google-auth always names that one)."""
        import jwt

        form = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        try:
            if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
                raise jwt.InvalidTokenError("grant_type")
            claims = jwt.decode(form.get("assertion", ""), self.key.public_key(), algorithms=["RS256"],
                                audience="https://oauth2.googleapis.com/token")
            if claims.get("iss") != self.email:
                raise jwt.InvalidTokenError("iss")
        except jwt.InvalidTokenError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        return self._issue_token()

    def metadata(self, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        """The metadata server's answers google-auth's compute credentials use (`GCE_METADATA_HOST` and
        `GCE_METADATA_IP` point at this double): the ping, the runtime account and its token."""
        if headers.get("metadata-flavor") != "Google":
            return 403, "Missing required header: Metadata-Flavor"
        path = path.split("?", 1)[0]
        account = "/computeMetadata/v1/instance/service-accounts/default/"
        if path == "/":
            return 200, ""
        if path == "/computeMetadata/v1/project/project-id":
            return 200, "zipkku-local"
        if path == account:
            return 200, {"aliases": ["default"], "email": self.email,
                         "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}
        if path == account + "token":
            return self._issue_token()
        return 404, "Not found"

    def _issue_token(self) -> tuple[int, dict[str, Any]]:
        token = "ya29." + secrets.token_urlsafe(32)
        with self.lock:
            self._tokens[token] = time.monotonic() + 3600
            self.token_calls += 1
        return 200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Google's front ends: pooled clients reuse connections
            disable_nagle_algorithm = True  # else headers and body in two writes wait on a delayed ACK (40 ms)

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path = self.path.split("?", 1)[0]
                headers = {k.lower(): v for k, v in self.headers.items()}
                if path.startswith(SIGN_PATH_PREFIX) and path.endswith(":signBlob"):
                    self._reply(*double.sign_blob(path, headers, body))
                elif path == "/token":
                    self._reply(*double.token(body))
                else:
                    self._reply(*_error(404, "NOT_FOUND", "The requested URL was not found on this server."))

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/" or self.path.startswith("/computeMetadata/"):
                    status, payload = double.metadata(self.path, {k.lower(): v for k, v in self.headers.items()})
                    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Metadata-Flavor", "Google")
                    self.send_header("Content-Type", "application/text" if isinstance(payload, str)
                                     else "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                elif self.path == "/_double/stats":
                    with double.lock:
                        self._reply(200, {"sign_calls": double.sign_calls, "token_calls": double.token_calls})
                else:
                    self._reply(*_error(404, "NOT_FOUND", "The requested URL was not found on this server."))

        return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--email", required=True)
    parser.add_argument("--adc-file", required=True, help="where to write the ADC file pointing at this double")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--quota-per-minute", type=int, default=None)
    args = parser.parse_args()
    double = IamDouble(args.key_file, args.email, latency=args.latency_ms / 1000, port=args.port,
                       quota_per_minute=args.quota_per_minute)
    double.write_adc(args.adc_file)
    double.server.serve_forever(0.05)


if __name__ == "__main__":
    main()
