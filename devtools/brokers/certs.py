"""A throwaway certificate authority and a server certificate for a local broker's TLS listener:
for the tests of a secured cluster on loopback, never for production.

    files = make_tls_files(directory, "127.0.0.1")
    files.ca          # the CA's certificate (PEM file): what a client is given (--ssl-cafile)
    files.key_pem     # the server's private key (PKCS#8, unencrypted) and
    files.chain_pem   # its certificate chain, as PEM text: Kafka's ssl.keystore.key/.certificate.chain
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    key_pem: str
    chain_pem: str


def make_tls_files(directory: Path, host: str) -> TlsFiles:
    """A new CA, and a certificate it signs for `host` (an IP address or a name; `localhost` too),
    valid from a day ago for 30 days. Writes the CA's certificate to `directory/ca.pem`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: str, issuer: str, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30)))

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = (builder("mynapoint test CA", "mynapoint test CA", ca_key)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    try:
        san: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(host))]
    except ValueError:
        san = [x509.DNSName(host)]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (builder(host, "mynapoint test CA", key)
            .add_extension(x509.SubjectAlternativeName([*san, x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    directory.mkdir(parents=True, exist_ok=True)
    ca = directory / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(pem))
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    chain_pem = (cert.public_bytes(pem) + ca_cert.public_bytes(pem)).decode()
    return TlsFiles(ca, key_pem, chain_pem)
