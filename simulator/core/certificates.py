"""A charge point's certificates, as the OCPP 1.6 security whitepaper (edition 3) has them.

Plain Python on the `cryptography` library. One `CertificateStore` per charger holds:

* the root certificates the central system installed (InstallCertificate):
  CentralSystemRootCertificate (which CSMS servers to trust) and ManufacturerRootCertificate
  (which firmware signers to trust), listed and deleted by their hash data
  (GetInstalledCertificateIds / DeleteCertificate: SHA256 of the issuer's name and key, and
  the serial number, as an OCSP request identifies a certificate);
* the charge point's own key pair and certificate chain (SignCertificate /
  CertificateSigned), the client certificate of security profile 3. A new key is generated
  for every CSR; it replaces the one in use only when a chain signed for it is accepted.

Private keys never leave the store except through `private_key_pem()` (for the TLS
handshake and for the store's own persistence); `repr` and `records()` describe a store
without them, and `secret_record()` is the one place the keys are handed to persistence.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

log = logging.getLogger(__name__)

# CiString / string limits of the 1.6 security messages.
MAX_PEM = 5500  # InstallCertificate.certificate, SignCertificate.csr
MAX_CHAIN = 10_000  # CertificateSigned.certificateChain


class CertificateUse(StrEnum):
    CENTRAL_SYSTEM_ROOT = "CentralSystemRootCertificate"
    MANUFACTURER_ROOT = "ManufacturerRootCertificate"


class CertificateError(ValueError):
    """A certificate, chain or signature that does not pass; the message says why."""


@dataclass(frozen=True, slots=True)
class HashData:
    """How the whitepaper names an installed certificate (CertificateHashDataType)."""

    issuer_name_hash: str
    issuer_key_hash: str
    serial_number: str
    hash_algorithm: str = "SHA256"

    def as_wire(self) -> dict[str, str]:
        return {
            "hashAlgorithm": self.hash_algorithm,
            "issuerNameHash": self.issuer_name_hash,
            "issuerKeyHash": self.issuer_key_hash,
            "serialNumber": self.serial_number,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> HashData:
        return cls(
            issuer_name_hash=str(data.get("issuerNameHash", "")).lower(),
            issuer_key_hash=str(data.get("issuerKeyHash", "")).lower(),
            serial_number=str(data.get("serialNumber", "")).lower().lstrip("0") or "0",
            hash_algorithm=str(data.get("hashAlgorithm", "SHA256")),
        )


@dataclass(slots=True)
class InstalledRoot:
    use: CertificateUse
    pem: str
    # AdditionalRootCertificateCheck: the root a new one replaced, kept until a connection
    # made with the new one succeeds.
    fallback: bool = False

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.pem.encode())


def parse_pem_chain(text: str) -> list[x509.Certificate]:
    """The certificates of a PEM text, in order; CertificateError if there is none or one
    does not parse."""
    try:
        chain = x509.load_pem_x509_certificates(text.encode())
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate ({exc})") from None
    if not chain:
        raise CertificateError("no certificate in the PEM text")
    return chain


# HashAlgorithmEnumType: the hashes a CSMS may name a certificate by. What the charger
# lists it hashes with SHA256; a DeleteCertificate is matched with the hash it names.
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}


def hash_data(
    certificate: x509.Certificate,
    issuer: x509.Certificate | None = None,
    algorithm: str = "SHA256",
) -> HashData:
    """The hash data of a certificate: the hash (`algorithm`, one of HashAlgorithmEnumType)
    of its issuer's DER name and of the issuer's public key (the BIT STRING, as OCSP
    hashes it), and its serial number in hex. A root is its own issuer."""
    issuer = issuer or certificate
    request = (
        ocsp.OCSPRequestBuilder().add_certificate(certificate, issuer, _HASHES[algorithm]()).build()
    )
    return HashData(
        issuer_name_hash=request.issuer_name_hash.hex(),
        issuer_key_hash=request.issuer_key_hash.hex(),
        serial_number=format(request.serial_number, "x"),
        hash_algorithm=algorithm,
    )


def signed_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer` issued `certificate` (names match and its key made the signature)."""
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _valid_now(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return bool(constraints.value.ca)


def verify_signature(certificate: x509.Certificate, signature: bytes, data: bytes) -> bool:
    """Whether `signature` is the certificate's key's SHA256 signature over `data` (RSA
    PKCS#1 v1.5 or PSS, ECDSA, or Ed25519)."""
    key = certificate.public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            try:
                key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
            except InvalidSignature:
                pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
                key.verify(signature, data, pss, hashes.SHA256())
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def decode_signature(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CertificateError("the signature is not base64") from None


@dataclass(slots=True)
class CertificateStore:
    """One charger's installed roots, its own key and chain, and the key of a pending CSR."""

    roots: list[InstalledRoot] = field(default_factory=list)
    chain_pem: str = ""  # the charge point certificate first, then its intermediates
    _key_pem: str = field(default="", repr=False)
    _pending_key_pem: str = field(default="", repr=False)

    def __repr__(self) -> str:
        return (
            f"CertificateStore(roots={len(self.roots)}, client={'yes' if self.chain_pem else 'no'})"
        )

    # -- persistence -------------------------------------------------------------------------

    def records(self) -> dict[str, Any]:
        """What may be shown or exported: the certificates, never a key."""
        return {
            "roots": [
                {"use": str(root.use), "pem": root.pem, "fallback": root.fallback}
                for root in self.roots
            ],
            "chain": self.chain_pem,
        }

    def secret_record(self) -> dict[str, str]:
        """The private keys, for the store's own persistence only (encrypted there)."""
        return {"key": self._key_pem, "pending_key": self._pending_key_pem}

    @classmethod
    def restore(cls, record: dict[str, Any], secrets: dict[str, str]) -> CertificateStore:
        roots = []
        for item in record.get("roots") or ():
            try:
                roots.append(
                    InstalledRoot(
                        CertificateUse(item["use"]), item["pem"], bool(item.get("fallback"))
                    )
                )
            except (KeyError, ValueError):
                log.warning("a stored root certificate of an unknown kind was skipped")
        return cls(
            roots=roots,
            chain_pem=str(record.get("chain") or ""),
            _key_pem=secrets.get("key", ""),
            _pending_key_pem=secrets.get("pending_key", ""),
        )

    # -- InstallCertificate, GetInstalledCertificateIds, DeleteCertificate --------------------

    def install_root(
        self,
        use: CertificateUse,
        pem: str,
        *,
        max_length: int,
        additional_check: bool,
        now: datetime,
    ) -> str:
        """InstallCertificate: Accepted, Rejected (store full, or AdditionalRootCertificateCheck
        not met) or Failed (not a valid CA certificate)."""
        try:
            chain = parse_pem_chain(pem)
        except CertificateError as exc:
            log.info("InstallCertificate failed: %s", exc)
            return "Failed"
        if len(chain) != 1:
            log.info("InstallCertificate failed: %d certificates in one", len(chain))
            return "Failed"
        certificate = chain[0]
        if not _is_ca(certificate) or not _valid_now(certificate, now):
            log.info("InstallCertificate failed: not a CA certificate, or not valid now")
            return "Failed"
        ids = hash_data(certificate)
        for root in self.roots:
            if root.use is use and self._id(root) == ids:
                return "Accepted"  # installed already: nothing changes
        current = [r for r in self.roots if r.use is use and not r.fallback]
        if additional_check and use is CertificateUse.CENTRAL_SYSTEM_ROOT and current:
            # Whitepaper: one CSMS root at a time; a new one must be signed by the one it
            # replaces, which stays as the fallback until the new one has been used.
            old = current[0]
            if not signed_by(certificate, old.certificate):
                log.info("InstallCertificate rejected: not signed by the installed root")
                return "Rejected"
            self.roots = [r for r in self.roots if not (r.use is use and r.fallback)]
            old.fallback = True
            self.roots.append(InstalledRoot(use, pem.strip() + "\n"))
            return "Accepted"
        if len(self.roots) >= max_length:
            log.info("InstallCertificate rejected: the store holds %d already", len(self.roots))
            return "Rejected"
        self.roots.append(InstalledRoot(use, pem.strip() + "\n"))
        return "Accepted"

    def installed_ids(self, use: CertificateUse) -> list[HashData]:
        return [self._id(root) for root in self.roots if root.use is use]

    def delete(self, wanted: HashData, *, keep_last_central_root: bool) -> str:
        """DeleteCertificate: Accepted, NotFound, or Failed (the last CSMS root while the
        charger's connection depends on it, or the charge point's own certificate). The
        certificates are hashed with the algorithm `wanted` names (NotFound for one the
        enum does not hold: nothing is hashed so)."""
        algorithm = wanted.hash_algorithm
        if algorithm not in _HASHES:
            return "NotFound"
        for root in self.roots:
            if self._matches(hash_data(root.certificate, algorithm=algorithm), wanted):
                if (
                    keep_last_central_root
                    and root.use is CertificateUse.CENTRAL_SYSTEM_ROOT
                    and len(self.roots_of(CertificateUse.CENTRAL_SYSTEM_ROOT)) == 1
                ):
                    return "Failed"
                self.roots.remove(root)
                return "Accepted"
        chain = self.client_chain()
        if chain and self._matches(hash_data(chain[0], self._issuer_of(chain), algorithm), wanted):
            return "Failed"  # the whitepaper does not let the CSMS delete the charger's own
        return "NotFound"

    def roots_of(self, use: CertificateUse) -> list[InstalledRoot]:
        return [root for root in self.roots if root.use is use]

    def central_system_roots_pem(self) -> str:
        return "".join(root.pem for root in self.roots_of(CertificateUse.CENTRAL_SYSTEM_ROOT))

    def drop_fallback(self) -> bool:
        """A connection with the new CSMS root succeeded: forget the one it replaced."""
        before = len(self.roots)
        self.roots = [root for root in self.roots if not root.fallback]
        return len(self.roots) != before

    @staticmethod
    def _id(root: InstalledRoot) -> HashData:
        return hash_data(root.certificate)

    @staticmethod
    def _matches(ours: HashData, wanted: HashData) -> bool:
        return (
            ours.issuer_name_hash == wanted.issuer_name_hash
            and ours.issuer_key_hash == wanted.issuer_key_hash
            and ours.serial_number == wanted.serial_number
        )

    def _issuer_of(self, chain: list[x509.Certificate]) -> x509.Certificate | None:
        if len(chain) > 1:
            return chain[1]
        for root in self.roots:
            if signed_by(chain[0], root.certificate):
                return root.certificate
        return None

    # -- SignCertificate / CertificateSigned -------------------------------------------------

    def new_csr(self, common_name: str, organization: str) -> str:
        """A PEM CSR for a key generated now (kept as the pending key; the key in use stays
        until a chain for the new one is accepted)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "ChargeSim"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:64] or "ChargeSim"),
            ]
        )
        csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
        self._pending_key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return csr.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def awaiting_chain(self) -> bool:
        return bool(self._pending_key_pem)

    def accept_chain(self, text: str, *, max_chain_size: int, now: datetime) -> None:
        """CertificateSigned: install the chain if it is for our pending (or current) key,
        fits CertificateSignedMaxChainSize (characters), is valid now, each certificate is
        signed by the next, and, when CSMS roots are installed, the last one is signed by
        one of them. CertificateError says why not."""
        if max_chain_size and len(text) > max_chain_size:
            raise CertificateError(
                f"the chain has {len(text)} characters, above CertificateSignedMaxChainSize"
            )
        chain = parse_pem_chain(text)
        leaf_key = chain[0].public_key()
        key_pem = ""
        for candidate in (self._pending_key_pem, self._key_pem):
            if candidate and _same_key(candidate, leaf_key):
                key_pem = candidate
                break
        if not key_pem:
            raise CertificateError("the certificate is not for this charge point's key")
        for certificate in chain:
            if not _valid_now(certificate, now):
                raise CertificateError("a certificate of the chain is not valid now")
        for lower, upper in itertools.pairwise(chain):
            if not signed_by(lower, upper):
                raise CertificateError(
                    "the chain is not in order (a link is not signed by the next)"
                )
        roots = [root.certificate for root in self.roots_of(CertificateUse.CENTRAL_SYSTEM_ROOT)]
        if roots and not any(signed_by(chain[-1], root) or chain[-1] == root for root in roots):
            raise CertificateError(
                "the chain does not lead to an installed CentralSystemRootCertificate"
            )
        self.chain_pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
        self._key_pem = key_pem
        if key_pem == self._pending_key_pem:
            self._pending_key_pem = ""

    def client_chain(self) -> list[x509.Certificate]:
        return parse_pem_chain(self.chain_pem) if self.chain_pem else []

    @property
    def has_client_certificate(self) -> bool:
        return bool(self.chain_pem and self._key_pem)

    def private_key_pem(self) -> str:
        """The key of the installed charge point certificate (for the TLS handshake)."""
        return self._key_pem

    # -- SignedUpdateFirmware ----------------------------------------------------------------

    def check_signing_certificate(self, pem: str, now: datetime) -> x509.Certificate:
        """The firmware signing certificate, if an installed ManufacturerRootCertificate
        issued it (directly or through the intermediates sent with it) and it is valid now;
        CertificateError otherwise."""
        chain = parse_pem_chain(pem)
        for certificate in chain:
            if not _valid_now(certificate, now):
                raise CertificateError("the signing certificate is not valid now")
        for lower, upper in itertools.pairwise(chain):
            if not signed_by(lower, upper):
                raise CertificateError("the signing certificate's chain is not in order")
        roots = [root.certificate for root in self.roots_of(CertificateUse.MANUFACTURER_ROOT)]
        if not roots:
            raise CertificateError("no ManufacturerRootCertificate is installed")
        if not any(signed_by(chain[-1], root) or chain[-1] == root for root in roots):
            raise CertificateError("no installed ManufacturerRootCertificate issued it")
        return chain[0]


def _same_key(private_pem: str, public: Any) -> bool:
    try:
        key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return bool(key.public_key().public_bytes(*spki) == public.public_bytes(*spki))


def utc_now(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
