"""An identity provider for the authorizer tests, built on PyJWT.

    jwt_issuer.py keys DIR KID...      make a key per KID (r*: RSA 2048,
                                       e*: EC P-256, d*: Ed25519) in DIR
    jwt_issuer.py jwks DIR OUT KID...  write the JWKS of those keys to OUT
    jwt_issuer.py tokens DIR           read [{"kid", "alg", "claims",
                                       "header"?}] on stdin, print the
                                       tokens as a JSON list
    jwt_issuer.py serve DIR [CERT KEY] serve DIR over HTTP (HTTPS with CERT
                                       and KEY) on 127.0.0.1, port 0; print
                                       the port, then serve until killed
"""

import http.server
import json
import os
import ssl
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm


def key_path(d, kid):
    return os.path.join(d, kid + ".key.pem")


def make_key(kid):
    if kid.startswith("r"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if kid.startswith("e"):
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def load(d, kid):
    with open(key_path(d, kid), "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def jwk(kid, key):
    public = key.public_key()
    if kid.startswith("r"):
        doc, alg = RSAAlgorithm.to_jwk(public, as_dict=True), "RS256"
    elif kid.startswith("e"):
        doc, alg = ECAlgorithm.to_jwk(public, as_dict=True), "ES256"
    else:
        doc, alg = OKPAlgorithm.to_jwk(public, as_dict=True), "EdDSA"
    doc.update({"kid": kid, "use": "sig", "alg": alg})
    return doc


def main():
    cmd, d = sys.argv[1], sys.argv[2]
    if cmd == "keys":
        for kid in sys.argv[3:]:
            pem = make_key(kid).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            with open(key_path(d, kid), "wb") as f:
                f.write(pem)
    elif cmd == "jwks":
        out, kids = sys.argv[3], sys.argv[4:]
        keys = [jwk(kid, load(d, kid)) for kid in kids]
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"keys": keys}, f)
        os.replace(tmp, out)
    elif cmd == "tokens":
        tokens = []
        for spec in json.load(sys.stdin):
            tokens.append(
                jwt.encode(
                    spec["claims"],
                    load(d, spec["kid"]),
                    algorithm=spec["alg"],
                    headers={"kid": spec["kid"], **spec.get("header", {})},
                )
            )
        print(json.dumps(tokens))
    elif cmd == "serve":
        handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=d)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if len(sys.argv) > 4:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(sys.argv[3], sys.argv[4])
            server.socket = context.wrap_socket(server.socket, server_side=True)
        print(server.server_address[1], flush=True)
        server.serve_forever()
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
