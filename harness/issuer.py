"""A small OIDC issuer for the federation tests (issue #22), run as its own process:
`python3 -m harness.issuer --port P`.

It serves what a CI system's issuer serves — `/.well-known/openid-configuration` and a JWKS with
RS256 and ES256 keys (`Cache-Control: max-age=300`) — and GitHub Actions' ID-token request
endpoint (`/actions-token?audience=…`, bearer `actions-request-token`). Tests drive it through
control routes: `POST /mint` (and `/mint-batch`, `count` of them) signs arbitrary claims and headers (also with a key it never
publishes), `POST /rotate` adds a new current key, `POST /retire` unpublishes one, `GET /stats`
counts discovery and JWKS fetches. Needs `cryptography`."""

import argparse
import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ACTIONS_REQUEST_TOKEN = "actions-request-token"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def integer(value, size=None):
    size = size or (value.bit_length() + 7) // 8
    return b64(value.to_bytes(size, "big"))


class Key:
    def __init__(self, alg, kid=None):
        self.alg = alg
        self.kid = kid or f"{alg.lower()}-{uuid.uuid4().hex[:8]}"
        if alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.private = ec.generate_private_key(ec.SECP256R1())

    def jwk(self):
        numbers = self.private.public_key().public_numbers()
        if self.alg == "RS256":
            return {"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256", "n": integer(numbers.n),
                    "e": integer(numbers.e)}
        return {"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256", "crv": "P-256",
                "x": integer(numbers.x, 32), "y": integer(numbers.y, 32)}

    def public_pem(self):
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data):
        if self.alg == "RS256":
            return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


class Issuer:
    def __init__(self, base):
        self.base = base
        self.lock = threading.Lock()
        self.keys = [Key("RS256"), Key("ES256")]
        self.current = {"RS256": self.keys[0], "ES256": self.keys[1]}
        # Keys that sign but are never published: "a key the issuer never published".
        self.rogue = {"RS256": Key("RS256"), "ES256": Key("ES256")}
        self.stats = {"discovery": 0, "jwks": 0}

    def mint(self, spec):
        alg = spec.get("alg", "RS256")
        now = int(time.time())
        claims = {"iss": self.base, "aud": "tessera", "sub": "repo:acme/app:ref:refs/heads/main",
                  "iat": now, "nbf": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        for name, value in spec.get("claims", {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        with self.lock:
            key = self.rogue[alg] if spec.get("rogue") else self.current.get(alg, self.current["RS256"])
            if spec.get("kid_of"):  # sign with the rogue key under a published kid
                kid = self.current[spec["kid_of"]].kid
            else:
                kid = spec.get("kid", key.kid)
        header = {"alg": alg, "typ": "JWT", "kid": kid, **spec.get("header", {})}
        signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}".encode()
        return f"{signing_input.decode()}.{b64(key.sign(signing_input))}", claims

    def discovery(self):
        return {"issuer": self.base, "jwks_uri": f"{self.base}/jwks", "id_token_signing_alg_values_supported":
                ["RS256", "ES256"], "response_types_supported": ["id_token"], "subject_types_supported": ["public"]}


def handler(issuer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def answer(self, status, body, headers=None):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def body(self):
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def do_GET(self):
            url = urlparse(self.path)
            if url.path == "/.well-known/openid-configuration":
                with issuer.lock:
                    issuer.stats["discovery"] += 1
                self.answer(200, issuer.discovery(), {"Cache-Control": "max-age=300"})
            elif url.path == "/jwks":
                with issuer.lock:
                    issuer.stats["jwks"] += 1
                    keys = [key.jwk() for key in issuer.keys]
                self.answer(200, {"keys": keys}, {"Cache-Control": "public, max-age=300"})
            elif url.path == "/stats":
                with issuer.lock:
                    self.answer(200, dict(issuer.stats))
            elif url.path == "/public-pem":
                with issuer.lock:
                    pem = issuer.current["RS256"].public_pem().decode()
                self.answer(200, {"pem": pem, "jwk": issuer.current["RS256"].jwk()})
            elif url.path == "/actions-token":
                # GitHub Actions: GET $ACTIONS_ID_TOKEN_REQUEST_URL&audience=… with the request token.
                if self.headers.get("Authorization") != f"bearer {ACTIONS_REQUEST_TOKEN}":
                    self.answer(401, {"message": "bad request token"})
                    return
                audience = parse_qs(url.query).get("audience", ["tessera"])[0]
                token, _ = issuer.mint({"claims": {"aud": audience, "repository": "acme/app",
                                                   "ref": "refs/heads/main", "sub": "repo:acme/app:ref:refs/heads/main"}})
                self.answer(200, {"count": 1, "value": token})
            else:
                self.answer(404, {"error": "not found"})

        def do_POST(self):
            url = urlparse(self.path)
            spec = self.body()
            if url.path == "/mint":
                token, claims = issuer.mint(spec)
                self.answer(200, {"token": token, "claims": claims})
            elif url.path == "/mint-batch":  # `count` tokens of the same spec, each its own jti
                count = int(spec.pop("count", 1))
                self.answer(200, {"tokens": [issuer.mint(spec)[0] for _ in range(count)]})
            elif url.path == "/rotate":
                alg = spec.get("alg", "RS256")
                with issuer.lock:
                    key = Key(alg)
                    issuer.keys.append(key)
                    issuer.current[alg] = key
                self.answer(200, {"kid": key.kid})
            elif url.path == "/retire":
                with issuer.lock:
                    issuer.keys = [key for key in issuer.keys if key.kid != spec["kid"]]
                self.answer(200, {"retired": spec["kid"]})
            else:
                self.answer(404, {"error": "not found"})

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    issuer = Issuer(f"http://{args.host}:{args.port}")
    server = ThreadingHTTPServer((args.host, args.port), handler(issuer))
    server.daemon_threads = True
    print(f"issuer {issuer.base} ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
