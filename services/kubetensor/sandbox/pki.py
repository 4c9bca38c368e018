"""The certificates a local control plane needs, made in-process with ``cryptography``.

One throwaway CA signs the apiserver's serving certificate and the client certificates (an admin in
``system:masters`` for users and tests, and one identity per component so RBAC is exercised); a
separate RSA key pair signs service-account tokens. Everything is valid for 7 days and written with
0600 permissions: these are credentials, even if only for a sandbox.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=7)


@dataclass(frozen=True)
class ClientCert:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    """Paths of every file the control plane reads."""

    ca_cert: Path
    ca_key: Path
    apiserver_cert: Path
    apiserver_key: Path
    sa_key: Path
    sa_pub: Path
    clients: dict[str, ClientCert]


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    *,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(signer, hashes.SHA256())


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def create(directory: Path, *, clients: dict[str, str | None]) -> Pki:
    """Write a CA, the apiserver's cert, the SA key pair and one client cert per ``clients`` entry.

    ``clients`` maps a user name (the cert's CN) to its group (O), e.g. ``{"admin": "system:masters"}``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("kubetensor-sandbox-ca")
    ca = _cert(
        ca_name,
        ca_key,
        issuer=ca_name,
        signer=ca_key,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                True,
            ),
        ],
    )
    files = {
        "ca_cert": directory / "ca.crt",
        "ca_key": directory / "ca.key",
        "apiserver_cert": directory / "apiserver.crt",
        "apiserver_key": directory / "apiserver.key",
        "sa_key": directory / "sa.key",
        "sa_pub": directory / "sa.pub",
    }
    _write(files["ca_cert"], ca.public_bytes(serialization.Encoding.PEM))
    _write(files["ca_key"], _key_pem(ca_key))

    server_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [
        x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
    ]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", "10.0.0.1")]
    server = _cert(
        _name("kube-apiserver"),
        server_key,
        issuer=ca_name,
        signer=ca_key,
        extensions=[
            (x509.SubjectAlternativeName(sans), False),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
        ],
    )
    _write(files["apiserver_cert"], server.public_bytes(serialization.Encoding.PEM))
    _write(files["apiserver_key"], _key_pem(server_key))

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(files["sa_key"], _key_pem(sa_key))
    _write(
        files["sa_pub"],
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )

    client_files: dict[str, ClientCert] = {}
    for user, group in clients.items():
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(
            _name(user, group),
            key,
            issuer=ca_name,
            signer=ca_key,
            extensions=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
        )
        safe = user.replace(":", "-")
        client_files[user] = ClientCert(directory / f"{safe}.crt", directory / f"{safe}.key")
        _write(client_files[user].cert, cert.public_bytes(serialization.Encoding.PEM))
        _write(client_files[user].key, _key_pem(key))
    return Pki(clients=client_files, **files)
