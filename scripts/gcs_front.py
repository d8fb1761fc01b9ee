"""A local front for fake-gcs-server that enforces what Cloud Storage enforces on signed URLs, and its CORS.

fake-gcs-server checks no signature, expiry, content type, length range or precondition on a signed-URL
request, and answers CORS its own way. Our signed URLs point at this front (the client signs for the
emulator host it is given, and the local stack gives it this front's address), so everything a browser or an
attacker can do with a link is checked here, as Cloud Storage checks it, before the request reaches the
emulator:

- an XML API object request (`/<bucket>/<object>`) must carry a V4 signature (GOOG4-RSA-SHA256) that verifies
  against the local signing key: the canonical request is rebuilt from what arrived (method, path, query,
  the signed headers' values) and the RSA signature is checked with `cryptography`; an unsigned request is
  refused like an anonymous caller on a private bucket;
- X-Goog-Date + X-Goog-Expires (at most 7 days) must not be past;
- every header named in X-Goog-SignedHeaders must be present, and no other `x-goog-*` header may be sent;
- a PUT's body length must lie in a signed `x-goog-content-length-range`;
- a signed `x-goog-if-generation-match` is a precondition: 0 means "only if the object does not exist" (412
  otherwise), checked and written under one lock per object, so two PUTs of the same link cannot both win;
- refusals use Cloud Storage's statuses and XML error bodies;
- CORS: a preflight passes only for a configured origin, a method the bucket allows and request headers in
  the bucket's response-header list (the rules of terraform/storage.tf); answers carry the CORS headers too.

The JSON API (`/storage/v1/`, `/upload/storage/v1/`, `/download/storage/v1/`, `/batch/`) used by our own
server-side client passes through untouched (production authenticates it with OAuth; locally it is anonymous
as the emulator is). Run: `gcs_front.py --port P --upstream http://127.0.0.1:E --signing-key KEY
--cors-origins a,b --bucket-methods uploads=PUT,GET,HEAD ...` (binds 127.0.0.1).
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import http.client
import json
import threading
import urllib.parse
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

JSON_API_PREFIXES = ("/storage/v1/", "/upload/storage/v1/", "/download/storage/v1/", "/batch/", "/_internal/")
ALGORITHM = "GOOG4-RSA-SHA256"
MAX_EXPIRES_SECONDS = 604800  # 7 days: Cloud Storage's limit for V4 signed URLs
# The bucket CORS rule of terraform/storage.tf (tests/test_gcs_front.py holds the two together).
CORS_RESPONSE_HEADERS = ("Content-Type", "Content-Length", "x-goog-content-length-range",
                         "x-goog-if-generation-match", "ETag")
CORS_MAX_AGE_SECONDS = 3600
DRAIN_LIMIT_BYTES = 64 << 20  # a refused body up to this size is read and dropped; a larger one closes the connection
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "host"}


class Refusal(Exception):
    """A request Cloud Storage would refuse: status, XML error code, message and details."""

    def __init__(self, status: int, code: str, message: str, details: str = "", **extra: str) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.details, self.extra = status, code, message, details, extra

    def xml(self) -> bytes:
        parts = [f"<Code>{self.code}</Code>", f"<Message>{escape(self.message)}</Message>"]
        parts += [f"<{name}>{escape(value)}</{name}>" for name, value in self.extra.items()]
        if self.details:
            parts.append(f"<Details>{escape(self.details)}</Details>")
        return ("<?xml version='1.0' encoding='UTF-8'?><Error>" + "".join(parts) + "</Error>").encode()


def _malformed(parameter: str, details: str) -> Refusal:
    return Refusal(400, "MalformedSecurityHeader", "Your request has a malformed header.", details,
                   ParameterName=parameter)


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="~")


class Front:
    """What the handler needs: the upstream emulator, the public key that verifies signatures, the CORS rules
    and one lock per object name for preconditions."""

    def __init__(self, upstream: str, signing_key_pem: bytes, cors_origins: list[str],
                 bucket_methods: dict[str, list[str]]) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        parsed = urllib.parse.urlparse(upstream)
        if not parsed.hostname:
            raise ValueError(f"the upstream URL names no host: {upstream!r}")
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port or 80
        signing_key = serialization.load_pem_private_key(signing_key_pem, password=None)
        if not isinstance(signing_key, rsa.RSAPrivateKey):  # V4 signatures are GOOG4-RSA-SHA256
            raise ValueError(f"the signing key must be an RSA key, not {type(signing_key).__name__}")
        self.public_key = signing_key.public_key()
        self.cors_origins = set(cors_origins)
        self.bucket_methods = {name: [m.upper() for m in methods] for name, methods in bucket_methods.items()}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def object_lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(key, threading.Lock())

    def upstream(self, method: str, target: str, headers: dict[str, str], body: bytes | None):
        """One request to the emulator; returns (status, headers, body)."""
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            connection.request(method, target, body=body,
                               headers={**headers, "Host": f"{self.upstream_host}:{self.upstream_port}"})
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    # --- signatures ---------------------------------------------------------------------------------------

    def verify(self, method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str],
               now: datetime) -> dict[str, str]:
        """Check a V4 signed request; returns the signed headers (lower-case name -> value) or raises Refusal."""
        params = dict(query)
        required = ("X-Goog-Algorithm", "X-Goog-Credential", "X-Goog-Date", "X-Goog-Expires",
                    "X-Goog-SignedHeaders", "X-Goog-Signature")
        for name in required:
            if not params.get(name):
                raise _malformed(name, f"{name} is missing.")
        if params["X-Goog-Algorithm"] != ALGORITHM:
            raise _malformed("X-Goog-Algorithm", f"The algorithm must be {ALGORITHM}.")
        try:
            signed_at = datetime.strptime(params["X-Goog-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise _malformed("X-Goog-Date", "X-Goog-Date is not in the format YYYYMMDD'T'HHMMSS'Z'.") from None
        try:
            expires = int(params["X-Goog-Expires"])
        except ValueError:
            raise _malformed("X-Goog-Expires", "X-Goog-Expires is not an integer.") from None
        if not 1 <= expires <= MAX_EXPIRES_SECONDS:
            raise _malformed("X-Goog-Expires", f"X-Goog-Expires must be between 1 and {MAX_EXPIRES_SECONDS}.")
        if now >= signed_at + timedelta(seconds=expires):
            raise Refusal(400, "ExpiredToken", "Invalid argument.",
                          f"Request has expired: {int((signed_at + timedelta(seconds=expires)).timestamp())}")
        if signed_at > now + timedelta(minutes=15):
            raise _malformed("X-Goog-Date", "The request is not valid yet: X-Goog-Date is in the future.")
        credential = params["X-Goog-Credential"]
        _email, _, scope = credential.partition("/")
        if scope != f"{params['X-Goog-Date'][:8]}/auto/storage/goog4_request":
            raise _malformed("X-Goog-Credential", "The credential scope does not match X-Goog-Date.")
        try:
            signature = binascii.unhexlify(params["X-Goog-Signature"])
        except (binascii.Error, ValueError):
            raise _malformed("X-Goog-Signature", "The signature was not hex encoded.") from None

        signed_names = params["X-Goog-SignedHeaders"].split(";")
        lowered = {name.lower(): value for name, value in headers.items()}
        for name in signed_names:
            if name not in lowered:
                raise _malformed(name, "Header was included in signedheaders, but not in the request.")
        for name in lowered:
            # Extension headers change what the request does (preconditions, metadata, ACLs): Cloud Storage
            # accepts them on a signed URL only when the signer bound them.
            if name.startswith("x-goog-") and name not in signed_names:
                raise _malformed(name, "Header was not included in signedheaders.")
        signed = {name: " ".join(lowered[name].split()) for name in signed_names}

        canonical_query = "&".join(sorted(f"{_quote(k)}={_quote(v)}" for k, v in query if k != "X-Goog-Signature"))
        canonical_request = "\n".join([
            method, path, canonical_query, "".join(f"{name}:{signed[name]}\n" for name in signed_names),
            params["X-Goog-SignedHeaders"], signed.get("x-goog-content-sha256", "UNSIGNED-PAYLOAD"),
        ])
        string_to_sign = "\n".join([ALGORITHM, params["X-Goog-Date"], scope,
                                    hashlib.sha256(canonical_request.encode()).hexdigest()])
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        try:
            self.public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise Refusal(403, "SignatureDoesNotMatch", "Access denied.",
                          "The request signature we calculated does not match the signature you provided. "
                          "Check your Google secret key and signing method.",
                          StringToSign=string_to_sign, CanonicalRequest=canonical_request) from None
        return signed

    # --- CORS ---------------------------------------------------------------------------------------------

    def cors_headers(self, bucket: str, origin: str | None, method: str) -> dict[str, str]:
        """The CORS headers of an answer to `origin` (none when the bucket's rule does not admit it)."""
        if not origin or origin not in self.cors_origins or method not in self.bucket_methods.get(bucket, []):
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
                "Access-Control-Expose-Headers": ", ".join(CORS_RESPONSE_HEADERS)}

    def preflight(self, bucket: str, origin: str | None, method: str, request_headers: str) -> dict[str, str]:
        wanted = [h.strip().lower() for h in request_headers.split(",") if h.strip()]
        allowed = {h.lower() for h in CORS_RESPONSE_HEADERS}
        if not self.cors_headers(bucket, origin, method.upper()) or any(h not in allowed for h in wanted):
            return {}
        return {"Access-Control-Allow-Origin": origin or "", "Vary": "Origin",
                "Access-Control-Allow-Methods": ", ".join(self.bucket_methods[bucket]),
                "Access-Control-Allow-Headers": ", ".join(CORS_RESPONSE_HEADERS),
                "Access-Control-Max-Age": str(CORS_MAX_AGE_SECONDS)}


def _length_range(value: str) -> tuple[int, int]:
    low, sep, high = value.partition(",")
    try:
        low_n, high_n = int(low), int(high)
    except ValueError:
        raise Refusal(400, "InvalidArgument", "Invalid argument.",
                      "x-goog-content-length-range must be MIN,MAX.") from None
    if not sep or low_n < 0 or high_n < low_n:
        raise Refusal(400, "InvalidArgument", "Invalid argument.", "x-goog-content-length-range must be MIN,MAX.")
    return low_n, high_n


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and the client's
    # delayed ACK hold every small answer back by ~40 ms.
    disable_nagle_algorithm = True
    front: Front  # set on the subclass made by serve()

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # request lines carry signed URLs: never log them

    def do_GET(self):
        self._handle()

    def do_HEAD(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def do_PATCH(self):
        self._handle()

    def do_OPTIONS(self):
        self._handle()

    # --- plumbing -----------------------------------------------------------------------------------------

    def _body(self) -> bytes | None:
        """The request body: Content-Length bytes, or a chunked body decoded (the emulator gets a length)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._body_read = True
            chunks: list[bytes] = []
            while True:
                try:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                except ValueError:
                    self.close_connection = True
                    raise Refusal(400, "InvalidArgument", "Invalid argument.", "Malformed chunked body.") from None
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        if length is None:
            return None
        if not length.isdigit():
            raise Refusal(400, "InvalidArgument", "Invalid argument.", "Content-Length is not a number.")
        self._body_read = True
        return self.rfile.read(int(length))

    def _reply(self, status: int, headers: list[tuple[str, str]] | dict[str, str], body: bytes) -> None:
        self.send_response(status)
        items = list(headers.items() if isinstance(headers, dict) else headers)
        for name, value in items:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD":  # no body: the length is the object's, as the emulator said
            length = next((v for k, v in items if k.lower() == "content-length"), str(len(body)))
            self.send_header("Content-Length", length)
            self.end_headers()
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, refusal: Refusal, cors: dict[str, str]) -> None:
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) and not self._body_read:
            if int(length) <= DRAIN_LIMIT_BYTES:  # read what the client is sending, so it gets to read our answer
                for _ in range(0, int(length), 1 << 20):
                    self.rfile.read(min(1 << 20, int(length) - _))
            else:
                self.close_connection = True  # the connection cannot carry another request
        self._reply(refusal.status, {"Content-Type": "application/xml; charset=UTF-8", **cors}, refusal.xml())

    def _forward(self, body: bytes | None, extra: dict[str, str] | None = None) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        status, reply_headers, reply_body = self.front.upstream(self.command, self.path, headers, body)
        if extra is not None:  # an XML API answer: the bucket's CORS rule replaces the emulator's own headers
            reply_headers = [(k, v) for k, v in reply_headers if not k.lower().startswith("access-control-")
                             and k.lower() != "vary"] + list(extra.items())
        self._reply(status, reply_headers, reply_body)

    # --- the request ----------------------------------------------------------------------------------------

    def _handle(self) -> None:
        self._body_read = False  # one handler serves every request of a keep-alive connection
        try:
            split = urllib.parse.urlsplit(self.path)
            if split.path.startswith(JSON_API_PREFIXES):
                self._forward(self._body())
                return
            bucket, _, name = split.path.lstrip("/").partition("/")
            origin = self.headers.get("Origin")
            if self.command == "OPTIONS":
                cors = self.front.preflight(urllib.parse.unquote(bucket), origin,
                                            self.headers.get("Access-Control-Request-Method", ""),
                                            self.headers.get("Access-Control-Request-Headers", ""))
                if cors:
                    self._reply(200, cors, b"")
                else:
                    self._refuse(Refusal(403, "AccessDenied", "Access denied.",
                                         "CORS preflight refused: origin, method or headers not allowed."), {})
                return
            cors = self.front.cors_headers(urllib.parse.unquote(bucket), origin, self.command)
            try:
                self._signed_object_request(split, bucket, name, cors)
            except Refusal as refusal:
                self._refuse(refusal, cors)
        except Refusal as refusal:  # malformed framing of a passed-through request
            self._refuse(refusal, {})
        except (ConnectionRefusedError, TimeoutError, http.client.HTTPException):
            self._refuse(Refusal(503, "ServiceUnavailable", "Service unavailable.",
                                 "The storage emulator behind this front did not answer."), {})
        except ConnectionError:
            self.close_connection = True  # the client went away

    def _signed_object_request(self, split, bucket: str, name: str, cors: dict[str, str]) -> None:
        query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
        if not name or "X-Goog-Signature" not in dict(query):
            raise Refusal(403, "AccessDenied", "Access denied.",
                          f"Anonymous caller does not have storage.objects access to the Google Cloud Storage "
                          f"object {urllib.parse.unquote(bucket)}/{urllib.parse.unquote(name)}.")
        signed = self.front.verify(self.command, split.path, query, dict(self.headers.items()), datetime.now(UTC))
        if self.command != "PUT":
            self._forward(None, cors)
            return

        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise Refusal(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        if "x-goog-content-length-range" in signed:
            low, high = _length_range(signed["x-goog-content-length-range"])
            if int(length) > high:
                raise Refusal(400, "EntityTooLarge", "Your proposed upload is larger than the maximum object "
                              "size specified in your Policy Document.", "Content-length exceeds upper bound on range")
            if int(length) < low:
                raise Refusal(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum object "
                              "size specified in your Policy Document.", "Content-length is below lower bound on range")
        body = self.rfile.read(int(length))
        self._body_read = True
        expected = signed.get("x-goog-if-generation-match")
        if expected is None:
            self._forward(body, cors)
            return
        if not expected.isdigit():
            raise Refusal(400, "InvalidArgument", "Invalid argument.", "x-goog-if-generation-match must be a number.")
        bucket_name, object_name = urllib.parse.unquote(bucket), urllib.parse.unquote(name)
        with self.front.object_lock(f"{bucket_name}/{object_name}"):
            status, _, meta = self.front.upstream(
                "GET", f"/storage/v1/b/{_quote(bucket_name)}/o/{urllib.parse.quote(object_name, safe='')}", {}, None)
            if status not in (200, 404):
                raise Refusal(503, "ServiceUnavailable", "Service unavailable.",
                              "The storage emulator could not say whether the object exists.")
            current = int(json.loads(meta)["generation"]) if status == 200 else None
            if (current is None and int(expected) != 0) or (current is not None and current != int(expected)):
                raise Refusal(412, "PreconditionFailed",
                              "At least one of the pre-conditions you specified did not hold.",
                              "Condition failed: x-goog-if-generation-match")
            self._forward(body, cors)


def serve(host: str, port: int, front: Front) -> ThreadingHTTPServer:
    handler = type("FrontHandler", (Handler,), {"front": front})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="fake-gcs-server's URL")
    parser.add_argument("--signing-key", required=True, help="PEM private key whose public half verifies")
    parser.add_argument("--cors-origins", default="", help="comma-separated allowed origins")
    parser.add_argument("--bucket-methods", action="append", default=[],
                        help="BUCKET=METHOD,METHOD: the methods a bucket's CORS rule allows (repeatable)")
    args = parser.parse_args()
    with open(args.signing_key, "rb") as handle:
        key = handle.read()
    bucket_methods = {}
    for item in args.bucket_methods:
        bucket, _, methods = item.partition("=")
        bucket_methods[bucket] = [m for m in methods.split(",") if m]
    origins = [o.strip() for o in args.cors_origins.split(",") if o.strip()]
    server = serve(args.host, args.port, Front(args.upstream, key, origins, bucket_methods))
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
