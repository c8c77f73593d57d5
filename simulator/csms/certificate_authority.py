"""A small certificate authority for the built-in CSMS (security whitepaper, edition 3).

The CSMS answers a charger's SignCertificate by signing its CSR with this CA and sending
the chain in CertificateSigned; a TLS server that trusts the CA's root then accepts that
charger with security profile 3. The same class plays a manufacturer: it issues a firmware
signing certificate and signs firmware images for SignedUpdateFirmware.

Generated when first used and kept in memory only: a CA of a test or a demo run, never one
to trust beyond it.
"""

from __future__ import annotations

import base64
import ipaddress
import ssl
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_PEM = serialization.Encoding.PEM


def _name(common_name: str, organization: str = "ChargeSim") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(_PEM).decode()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class CertificateAuthority:
    """A root CA with its key; issues certificates valid from a minute ago."""

    def __init__(self, name: str = "ChargeSim CSMS Root CA", *, days: int = 365) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.days = days
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
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
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def root_pem(self) -> str:
        return _pem(self.certificate)

    def _issue(
        self,
        subject: x509.Name,
        public_key: CertificatePublicKeyTypes,
        *,
        ca: bool = False,
        usage: list[x509.ObjectIdentifier] | None = None,
        hosts: list[str] | None = None,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> x509.Certificate:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid_from or now - timedelta(minutes=1))
            .not_valid_after(valid_until or now + timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if usage:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        if hosts:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_san(host) for host in hosts]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256())

    # -- the CSMS side of SignCertificate / CertificateSigned -------------------------------

    def sign_csr(self, csr_pem: str) -> str:
        """The PEM chain for a charger's CSR (its certificate; the root is installed
        separately). ValueError if the CSR does not parse or its signature is wrong."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        if not csr.is_signature_valid:
            raise ValueError("the CSR's signature does not verify")
        certificate = self._issue(
            csr.subject, csr.public_key(), usage=[ExtendedKeyUsageOID.CLIENT_AUTH]
        )
        return _pem(certificate)

    def issue_for_key(
        self,
        public_key: CertificatePublicKeyTypes,
        common_name: str,
        *,
        valid_from: datetime | None = None,
        valid_until: datetime | None = None,
    ) -> str:
        """A client certificate for any public key (tests: an expired one, a stranger's)."""
        return _pem(
            self._issue(
                _name(common_name),
                public_key,
                usage=[ExtendedKeyUsageOID.CLIENT_AUTH],
                valid_from=valid_from,
                valid_until=valid_until,
            )
        )

    def sub_ca(self, name: str) -> CertificateAuthority:
        """A CA whose certificate this one signed (e.g. a new root signed by the old one,
        for AdditionalRootCertificateCheck)."""
        child = CertificateAuthority.__new__(CertificateAuthority)
        child.key = ec.generate_private_key(ec.SECP256R1())
        child.days = self.days
        child.certificate = self._issue(_name(name), child.key.public_key(), ca=True)
        return child

    # -- TLS server ---------------------------------------------------------------------

    def server_context(
        self, host: str = "127.0.0.1", *, client_certs: bool = True
    ) -> ssl.SSLContext:
        """A TLS server context for `host` with a certificate of this CA; with
        `client_certs`, a client must present a certificate this CA issued (profile 3)."""
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self._issue(
            _name(host), key.public_key(), usage=[ExtendedKeyUsageOID.SERVER_AUTH], hosts=[host]
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.TemporaryDirectory(prefix="chargesim-ca-") as folder:
            cert_path, key_path = Path(folder, "server.pem"), Path(folder, "server.key")
            cert_path.write_text(_pem(certificate))
            key_path.touch(mode=0o600)
            key_path.write_bytes(_key_pem(key))
            context.load_cert_chain(str(cert_path), str(key_path))
        if client_certs:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cadata=self.root_pem)
        return context

    # -- a manufacturer's firmware signing --------------------------------------------------

    def firmware_signer(self, name: str = "ChargeSim Firmware Signing") -> FirmwareSigner:
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self._issue(
            _name(name), key.public_key(), usage=[ExtendedKeyUsageOID.CODE_SIGNING]
        )
        return FirmwareSigner(key, _pem(certificate))


class FirmwareSigner:
    """A firmware signing key and its certificate: signs images (ECDSA, SHA256, base64)."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, certificate_pem: str) -> None:
        self._key = key
        self.certificate_pem = certificate_pem

    def sign(self, data: bytes) -> str:
        return base64.b64encode(self._key.sign(data, ec.ECDSA(hashes.SHA256()))).decode()


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
