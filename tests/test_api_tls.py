"""The HTTP API over TLS (issue 7, "TLS optional via config"): a real ``xdnsd serve`` with
``[api] tls_cert`` / ``tls_key`` on 127.0.0.1, a throwaway PKI made here with ``cryptography``
(a root CA, an intermediate, a leaf for 127.0.0.1 whose file holds the intermediate too), and
the ``[api]`` TLS settings' checks at config load."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.harness import XdnsdProcess, free_port
from xdnsd.config import ConfigError, load_config

TOKEN = "tls-reader-token-0123456789"
ZONE = "$TTL 300\n@ SOA ns1 host 1 3600 900 604800 60\n@ NS ns1\nns1 A 192.0.2.53\n"
PEM = serialization.Encoding.PEM


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _issue(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None if issuer is None else 0), True
        ).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
    else:
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    ca: Path  # the root: all a client trusts
    cert: Path  # the leaf for 127.0.0.1, then the intermediate that signed it
    key: Path
    other_key: Path  # a key of no certificate here


def make_pki(directory: Path) -> Pki:
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _issue("xdnsd test root CA", root_key, None, root_key, ca=True)
    mid = _issue("xdnsd test intermediate CA", mid_key, root, root_key, ca=True)
    leaf = _issue("127.0.0.1", leaf_key, mid, mid_key, ca=False)
    pki = Pki(directory / "ca.pem", directory / "api.crt", directory / "api.key",
              directory / "other.key")  # fmt: skip
    pki.ca.write_bytes(root.public_bytes(PEM))
    pki.cert.write_bytes(leaf.public_bytes(PEM) + mid.public_bytes(PEM))
    pki.key.write_bytes(_key_pem(leaf_key))
    pki.other_key.write_bytes(_key_pem(ec.generate_private_key(ec.SECP256R1())))
    return pki


def api_config(directory: Path, api_port: int, cert: Path | None, key: Path | None) -> str:
    tls = "" if cert is None else f'tls_cert = "{cert}"\n'
    tls += "" if key is None else f'tls_key = "{key}"\n'
    return f'[api]\nlisten = "127.0.0.1:{api_port}"\n{tls}[api.tokens.reader]\nsecret = "{TOKEN}"\n'


class Node:
    def __init__(self, directory: Path) -> None:
        self.pki = make_pki(directory)
        self.port, self.api_port = free_port(), free_port()
        zone = directory / "example.test.zone"
        zone.write_text(ZONE)
        self.config = directory / "xdnsd.toml"
        self.config.write_text(
            f'[server]\nlisten = ["127.0.0.1:{self.port}"]\ndata_dir = "{directory / "var"}"\n'
            + api_config(directory, self.api_port, self.pki.cert, self.pki.key)
            + f'[[zones]]\nname = "example.test"\nfile = "{zone}"\n'
        )
        self.url = f"https://127.0.0.1:{self.api_port}/api/v1/zones"
        self.proc = XdnsdProcess(self.config, self.port)
        self.proc.wait_ready("example.test")
        deadline = time.monotonic() + 15
        while True:  # the API process may still be starting
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.api_port), timeout=1).close()
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the API did not listen\n{self.proc.log()}")
            time.sleep(0.05)

    def trusting(self) -> ssl.SSLContext:
        """A client context that trusts the test root CA and nothing else."""
        return ssl.create_default_context(cafile=str(self.pki.ca))

    def get(self, context: ssl.SSLContext) -> tuple[int, Any]:
        request = urllib.request.Request(self.url, headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=5, context=context) as answer:
            return answer.status, json.loads(answer.read())


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    n = Node(tmp_path_factory.mktemp("tls"))
    try:
        yield n
    finally:
        assert n.proc.stop() == 0, n.proc.log()


def test_https_with_the_ca_serves_the_api(node: Node) -> None:
    status, zones = node.get(node.trusting())
    assert status == 200 and [z["zone"] for z in zones] == ["example.test."]
    # the root alone verifies the leaf: the server sent the intermediate from the cert file
    with node.trusting().wrap_socket(
        socket.create_connection(("127.0.0.1", node.api_port), timeout=5),
        server_hostname="127.0.0.1",
    ) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        peer = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
        assert peer.subject.rfc4514_string() == "CN=127.0.0.1"


def test_curl_with_the_ca(node: Node) -> None:
    curl = shutil.which("curl")
    assert curl is not None, "curl is missing: scripts/setup installs it (apt-get install curl)"
    done = subprocess.run(
        [curl, "--silent", "--show-error", "--fail", "--max-time", "10", "--cacert",
         str(node.pki.ca), "-H", f"Authorization: Bearer {TOKEN}", node.url],
        capture_output=True, timeout=20, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert [z["zone"] for z in json.loads(done.stdout)] == ["example.test."]


def test_a_client_not_trusting_the_ca_refuses(node: Node) -> None:
    with pytest.raises(urllib.error.URLError) as caught:
        node.get(ssl.create_default_context())
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError), caught.value


def test_plain_http_gets_no_data(node: Node) -> None:
    with socket.create_connection(("127.0.0.1", node.api_port), timeout=5) as plain:
        plain.sendall(
            b"GET /api/v1/zones HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            + f"Authorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := plain.recv(65536):
                answer += chunk
    assert b"example.test" not in answer and not answer.startswith(b"HTTP/"), answer


def _old_tls_client(maximum: ssl.TLSVersion) -> ssl.SSLContext:
    """A client willing to speak TLS 1.0 up to ``maximum`` (not verifying: only the version
    matters), with OpenSSL's security level lowered so that it may offer TLS < 1.2 at all."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1(_1) are
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def _handshake(port: int, context: ssl.SSLContext) -> str | None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return tls.version()


def _old_tls_possible(pki: Pki) -> bool:
    """Whether this OpenSSL lets a client and server here speak TLS 1.1 at all (a control:
    without it, the refusal below would prove nothing about xdnsd)."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(pki.cert, pki.key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            server.minimum_version = ssl.TLSVersion.TLSv1
        server.set_ciphers("DEFAULT:@SECLEVEL=0")
        client = _old_tls_client(ssl.TLSVersion.TLSv1_1)
    except (ValueError, ssl.SSLError):
        return False
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def accept() -> None:
        with contextlib.suppress(OSError), listener:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError), server.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        return _handshake(port, client) == "TLSv1.1"
    except (ssl.SSLError, OSError):
        return False
    finally:
        thread.join(5)


def test_tls_1_2_is_the_minimum(node: Node) -> None:
    # a client that would accept anything from TLS 1.0 up gets TLS 1.2 or better
    version = _handshake(node.api_port, _old_tls_client(ssl.TLSVersion.MAXIMUM_SUPPORTED))
    assert version in ("TLSv1.2", "TLSv1.3"), version
    assert _handshake(node.api_port, _old_tls_client(ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    if not _old_tls_possible(node.pki):
        pytest.skip("this OpenSSL does not let a client offer TLS 1.1 (negotiation checked)")
    for old in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _handshake(node.api_port, _old_tls_client(old))
    assert node.proc.proc.poll() is None, node.proc.log()  # still serving


def test_tls_settings_are_checked_at_load(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    config = tmp_path / "x.toml"

    def load(cert: Path | None, key: Path | None) -> None:
        config.write_text(api_config(tmp_path, 8053, cert, key))
        load_config(config)

    load(pki.cert, pki.key)  # the good pair, and tls_cert / tls_key are made absolute
    config.write_text('[api]\ntls_cert = "api.crt"\ntls_key = "api.key"\n')
    api = load_config(config).api
    assert api is not None and api.tls_cert == pki.cert and api.tls_key == pki.key
    with pytest.raises(ConfigError, match=r"\[api\]: tls_cert is set but tls_key is not"):
        load(pki.cert, None)
    with pytest.raises(ConfigError, match=r"\[api\]: tls_key is set but tls_cert is not"):
        load(None, pki.key)
    with pytest.raises(ConfigError) as caught:
        load(pki.cert, pki.other_key)
    assert f"[api].tls_key: {pki.other_key}: the key does not match the certificate in " in str(
        caught.value
    )
    missing = tmp_path / "nowhere.crt"
    with pytest.raises(ConfigError) as caught:
        load(missing, pki.key)
    assert f"[api].tls_cert: {missing}: cannot read: No such file or directory" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load(pki.cert, tmp_path / "nowhere.key")
    assert f"[api].tls_key: {tmp_path / 'nowhere.key'}: cannot read" in str(caught.value)
    with pytest.raises(ConfigError, match=r"\[api\]\.tls_cert: .*api\.key: not a PEM certificate"):
        load(pki.key, pki.key)  # the files swapped
    with pytest.raises(ConfigError, match=r"\[api\]\.tls_key: .*api\.crt: not a PEM private key"):
        load(pki.cert, pki.cert)
    encrypted = tmp_path / "encrypted.key"
    leaf_key = serialization.load_pem_private_key(pki.key.read_bytes(), None)
    encrypted.write_bytes(
        leaf_key.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
        )
    )
    with pytest.raises(ConfigError, match="encrypted; xdnsd needs it without a passphrase"):
        load(pki.cert, encrypted)
    # the existing rule stands: TLS is what lets the API listen on a non-loopback address
    config.write_text(
        f'[api]\nlisten = "192.0.2.1:8053"\ntls_cert = "{pki.cert}"\ntls_key = "{pki.key}"\n'
    )
    assert load_config(config).api is not None
