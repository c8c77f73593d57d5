"""Certificates of the OCPP 1.6 security whitepaper (edition 3) over real sockets:
SignCertificate / CertificateSigned against the built-in CSMS's CA (and security profile 3
with the certificate obtained that way), InstallCertificate, GetInstalledCertificateIds and
DeleteCertificate, each with its failure paths."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from channels.db import database_sync_to_async
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chargers.models import CertificateStoreRecord
from simulator.core.certificates import CertificateUse
from simulator.core.charge_point import BootState, Listener
from simulator.csms import CentralSystem
from simulator.csms.certificate_authority import CertificateAuthority
from simulator.runtime.events import EventPublisher
from tests.cast import make_charger
from tests.engine import connected, runtime_charger, wait_until
from tests.workers import running

CS_ROOT = "CentralSystemRootCertificate"
MF_ROOT = "ManufacturerRootCertificate"


def security_events(csms: CentralSystem, cp_id: str) -> list[str]:
    return [
        e.payload["type"]
        for e in csms.log
        if e.cp_id == cp_id
        and e.direction == "in"
        and e.message_type == 2
        and e.action == "SecurityEventNotification"
    ]


def expected_ids(pem: str, algorithm: str = "SHA256") -> dict[str, str]:
    """A root's hash data, worked out here without the charger's code: the hash of its DER
    subject (it is its own issuer) and of its public key's BIT STRING (an EC point)."""
    certificate = x509.load_pem_x509_certificate(pem.encode())
    point = certificate.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    digest = getattr(hashlib, algorithm.lower())
    return {
        "hashAlgorithm": algorithm,
        "issuerNameHash": digest(certificate.subject.public_bytes()).hexdigest(),
        "issuerKeyHash": digest(point).hexdigest(),
        "serialNumber": format(certificate.serial_number, "x"),
    }


async def obtain_certificate(csms: CentralSystem, charger) -> None:
    charger.request_certificate()
    await wait_until(
        lambda: csms.certificate_signed_answers.get(charger.id), message="a CertificateSigned"
    )


# -- SignCertificate / CertificateSigned -------------------------------------------------------


async def test_a_certificate_from_sign_certificate_opens_a_profile_3_connection(csms):
    """The issue's Show item: the charger gets its certificate from the CSMS's CA, then
    connects over wss with security profile 3 to a server that requires a client
    certificate of that CA."""
    publisher = EventPublisher()
    charger = runtime_charger(
        "CERT-1",
        csms.url,
        evses=1,
        serial_number="SN-0042",
        config={"CpoName": "Acme Charging"},
        listener=publisher,
    )
    async with connected(charger):
        # The charger trusts the CSMS's TLS server through the root installed over OCPP.
        assert await csms.install_certificate("CERT-1", csms.ca.root_pem) == "Accepted"
        await obtain_certificate(csms, charger)
        assert csms.certificate_signed_answers["CERT-1"] == ["Accepted"]
    [csr_pem] = csms.csrs["CERT-1"]
    csr = x509.load_pem_x509_csr(csr_pem.encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SN-0042"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "Acme Charging"
    )
    [leaf] = charger.certificates.client_chain()
    assert leaf.public_key() == csr.public_key()

    secure = CentralSystem()
    await secure.start(host="127.0.0.1", port=0, ssl=csms.ca.server_context())
    try:
        charger.spec.csms_url = secure.url.replace("ws://", "wss://")
        # The CSMS raises the profile over OCPP: the certificate it signed is what profile
        # 3 needs (it was refused as "no client certificate", for want of files).
        assert charger.change_configuration("SecurityProfile", "3") == "Accepted"
        assert charger.spec.security_profile == 3
        async with connected(charger):
            assert charger.boot is BootState.ACCEPTED
            assert "CERT-1" in secure.connected
            # The only CSMS root while the connection depends on it: not deleted.
            _status, [root_id] = await secure.get_installed_certificate_ids("CERT-1")
            assert await secure.delete_certificate("CERT-1", root_id) == "Failed"
        # Without a client certificate, the same server refuses the handshake.
        stranger = runtime_charger("CERT-1X", charger.spec.csms_url, evses=1, security_profile=2)
        stranger.certificates.install_root(
            CertificateUse.CENTRAL_SYSTEM_ROOT,
            csms.ca.root_pem,
            max_length=10,
            additional_check=False,
            now=datetime.now(UTC),
        )
        async with connected(stranger, booted=False):
            await wait_until(lambda: stranger.link_error != "", message="a refusal")
        assert stranger.boot is BootState.NONE
    finally:
        await secure.stop()
    # The private key never went over the socket or to the dashboard's frames.
    frames = " ".join(text for _at, _way, text in publisher.frames["CERT-1"])
    assert "PRIVATE KEY" not in frames and "BEGIN CERTIFICATE REQUEST" in frames
    assert all("PRIVATE KEY" not in e.raw for e in csms.log)
    assert "PRIVATE" not in repr(charger.certificates)


async def test_without_certificate_signed_it_sends_a_new_csr_then_gives_up(csms):
    csms.sign_certificates = False  # SignCertificate accepted, no chain ever follows
    charger = runtime_charger(
        "CERT-2",
        csms.url,
        evses=1,
        config={"CertSigningWaitMinimum": "1", "CertSigningRepeatTimes": "1"},
    )
    async with connected(charger):
        charger.request_certificate()
        await wait_until(lambda: len(csms.csrs.get("CERT-2", [])) == 2, message="a second CSR")
        await wait_until(lambda: "certificate" not in charger.jobs, timeout=5, message="the end")
    first, second = (x509.load_pem_x509_csr(c.encode()) for c in csms.csrs["CERT-2"])
    assert first.public_key() != second.public_key()  # a new key for each CSR
    assert len(csms.csrs["CERT-2"]) == 2  # 1 + CertSigningRepeatTimes
    assert charger.certificates.chain_pem == ""


async def test_a_chain_arriving_after_a_repeat_stops_the_repeats(csms):
    csms.sign_certificates = False
    charger = runtime_charger(
        "CERT-2B",
        csms.url,
        evses=1,
        config={"CertSigningWaitMinimum": "1", "CertSigningRepeatTimes": "5"},
    )
    async with connected(charger):
        charger.request_certificate()
        await wait_until(lambda: len(csms.csrs.get("CERT-2B", [])) == 2, message="a repeat")
        chain = csms.ca.sign_csr(csms.csrs["CERT-2B"][-1])
        assert await csms.certificate_signed("CERT-2B", chain) == "Accepted"
        await wait_until(lambda: "certificate" not in charger.jobs, message="the job to end")
    assert len(csms.csrs["CERT-2B"]) == 2


async def test_certificate_signed_is_rejected_when_the_chain_does_not_pass(csms):
    charger = runtime_charger(
        "CERT-3", csms.url, evses=1, config={"CertificateSignedMaxChainSize": "2000"}
    )
    other_ca = CertificateAuthority("Another CA")
    async with connected(charger):
        csms.sign_certificates = False
        charger.request_certificate()
        await wait_until(lambda: csms.csrs.get("CERT-3"), message="a CSR")
        csr = x509.load_pem_x509_csr(csms.csrs["CERT-3"][0].encode())
        stranger = ec.generate_private_key(ec.SECP256R1()).public_key()
        now = datetime.now(UTC)
        bad = {
            "not PEM": "hello",
            "another key": csms.ca.issue_for_key(stranger, "CERT-3"),
            "expired": csms.ca.issue_for_key(
                csr.public_key(),
                "CERT-3",
                valid_from=now - timedelta(days=10),
                valid_until=now - timedelta(days=1),
            ),
            "too long": csms.ca.sign_csr(csms.csrs["CERT-3"][0]) * 3,
        }
        for why, chain in bad.items():
            assert await csms.certificate_signed("CERT-3", chain) == "Rejected", why
        # With a CSMS root installed, the chain must lead to it.
        assert await csms.install_certificate("CERT-3", csms.ca.root_pem) == "Accepted"
        foreign = other_ca.issue_for_key(csr.public_key(), "CERT-3")
        assert await csms.certificate_signed("CERT-3", foreign) == "Rejected"
        assert charger.certificates.chain_pem == ""
        good = csms.ca.sign_csr(csms.csrs["CERT-3"][0])
        assert await csms.certificate_signed("CERT-3", good) == "Accepted"
        await wait_until(
            lambda: security_events(csms, "CERT-3").count("InvalidChargePointCertificate") == 5,
            message="a security event per rejected chain",
        )
    assert charger.certificates.has_client_certificate


# -- InstallCertificate, GetInstalledCertificateIds, DeleteCertificate --------------------------


async def test_install_list_and_delete_root_certificates(csms):
    charger = runtime_charger("CERT-4", csms.url, evses=1)
    manufacturer = CertificateAuthority("ChargeSim Manufacturer Root")
    async with connected(charger):
        assert await csms.get_installed_certificate_ids("CERT-4") == ("NotFound", [])
        assert await csms.install_certificate("CERT-4", csms.ca.root_pem) == "Accepted"
        assert await csms.install_certificate("CERT-4", manufacturer.root_pem, MF_ROOT) == (
            "Accepted"
        )
        status, ids = await csms.get_installed_certificate_ids("CERT-4", CS_ROOT)
        assert (status, ids) == ("Accepted", [expected_ids(csms.ca.root_pem)])
        status, ids = await csms.get_installed_certificate_ids("CERT-4", MF_ROOT)
        assert (status, ids) == ("Accepted", [expected_ids(manufacturer.root_pem)])
        unknown = {**ids[0], "serialNumber": "1234"}
        assert await csms.delete_certificate("CERT-4", unknown) == "NotFound"
        assert await csms.delete_certificate("CERT-4", ids[0]) == "Accepted"
        assert await csms.get_installed_certificate_ids("CERT-4", MF_ROOT) == ("NotFound", [])
        # Profile 0 here: the last CSMS root may go (no connection depends on it).
        [root_id] = (await csms.get_installed_certificate_ids("CERT-4"))[1]
        assert await csms.delete_certificate("CERT-4", root_id) == "Accepted"


async def test_delete_certificate_matches_with_the_hash_algorithm_it_names(csms):
    """A CSMS may name a certificate by SHA384 or SHA512 hashes (HashAlgorithmEnumType): the
    charger hashes its certificates the same way to find it, not with SHA256 alone."""
    charger = runtime_charger("CERT-4H", csms.url, evses=1)
    first, second = (CertificateAuthority(f"ChargeSim Root {n}") for n in (1, 2))
    async with connected(charger):
        for authority in (first, second):
            assert await csms.install_certificate("CERT-4H", authority.root_pem, MF_ROOT) == (
                "Accepted"
            )
        # The SHA256 hashes under another name find nothing: the names must agree.
        mislabelled = {**expected_ids(first.root_pem), "hashAlgorithm": "SHA384"}
        assert await csms.delete_certificate("CERT-4H", mislabelled) == "NotFound"
        by_sha384 = expected_ids(first.root_pem, "SHA384")
        assert await csms.delete_certificate("CERT-4H", by_sha384) == "Accepted"
        by_sha512 = expected_ids(second.root_pem, "SHA512")
        assert await csms.delete_certificate("CERT-4H", by_sha512) == "Accepted"
        assert await csms.get_installed_certificate_ids("CERT-4H", MF_ROOT) == ("NotFound", [])


async def test_install_certificate_fails_or_is_rejected_when_it_must(csms):
    charger = runtime_charger(
        "CERT-5", csms.url, evses=1, config={"CertificateStoreMaxLength": "1"}
    )
    leaf = csms.ca.issue_for_key(ec.generate_private_key(ec.SECP256R1()).public_key(), "leaf")
    async with connected(charger):
        assert await csms.install_certificate("CERT-5", "not a certificate") == "Failed"
        assert await csms.install_certificate("CERT-5", leaf) == "Failed"  # not a CA
        assert await csms.install_certificate("CERT-5", csms.ca.root_pem) == "Accepted"
        full = CertificateAuthority("One too many").root_pem
        assert await csms.install_certificate("CERT-5", full, MF_ROOT) == "Rejected"
        assert len(charger.certificates.roots) == 1


async def test_additional_root_certificate_check_wants_the_new_root_signed_by_the_old(csms):
    charger = runtime_charger(
        "CERT-6", csms.url, evses=1, config={"AdditionalRootCertificateCheck": "true"}
    )
    successor = csms.ca.sub_ca("ChargeSim CSMS Root CA 2")
    async with connected(charger):
        assert await csms.install_certificate("CERT-6", csms.ca.root_pem) == "Accepted"
        unrelated = CertificateAuthority("Unrelated").root_pem
        assert await csms.install_certificate("CERT-6", unrelated) == "Rejected"
        new_pem = successor.certificate.public_bytes(serialization.Encoding.PEM).decode()
        assert await csms.install_certificate("CERT-6", new_pem) == "Accepted"
        # The old one stays as the fallback until the new one has been used.
        _status, ids = await csms.get_installed_certificate_ids("CERT-6")
        assert len(ids) == 2
        assert [root.fallback for root in charger.certificates.roots] == [True, False]


async def test_the_replaced_root_is_forgotten_once_a_tls_connection_used_the_new_one(csms):
    charger = runtime_charger(
        "CERT-6B", csms.url, evses=1, config={"AdditionalRootCertificateCheck": "true"}
    )
    successor = csms.ca.sub_ca("ChargeSim CSMS Root CA 2")
    new_pem = successor.certificate.public_bytes(serialization.Encoding.PEM).decode()
    async with connected(charger):
        assert await csms.install_certificate("CERT-6B", csms.ca.root_pem) == "Accepted"
        assert await csms.install_certificate("CERT-6B", new_pem) == "Accepted"
    assert len(charger.certificates.roots) == 2
    secure = CentralSystem()
    await secure.start(host="127.0.0.1", port=0, ssl=successor.server_context(client_certs=False))
    try:
        charger.spec.csms_url = secure.url.replace("ws://", "wss://")
        charger.spec.security_profile = 2
        async with connected(charger):
            assert "CERT-6B" in secure.connected
    finally:
        await secure.stop()
    [root] = charger.certificates.roots
    assert root.pem == new_pem and not root.fallback


class Attempts(Listener):
    """Counts failed connection attempts."""

    def __init__(self) -> None:
        self.failed = 0

    def on_connection(self, charger, event, detail) -> None:
        self.failed += event == "connect_failed"


async def test_an_untrusted_csms_certificate_is_one_security_event_per_outage(csms):
    """It is queued (durable) while the charger cannot connect, once however many
    attempts fail."""
    impostor = CertificateAuthority("Impostor")
    secure = CentralSystem()
    await secure.start(host="127.0.0.1", port=0, ssl=impostor.server_context(client_certs=False))
    attempts = Attempts()
    try:
        charger = runtime_charger(
            "CERT-8",
            secure.url.replace("ws://", "wss://"),
            evses=1,
            security_profile=2,
            listener=attempts,
        )
        charger.certificates.install_root(
            CertificateUse.CENTRAL_SYSTEM_ROOT,
            csms.ca.root_pem,
            max_length=10,
            additional_check=False,
            now=datetime.now(UTC),
        )
        async with connected(charger, booted=False):
            await wait_until(lambda: attempts.failed >= 3, message="three failed attempts")
            assert charger.link_error.startswith("certificate not trusted")
        events = [
            item.payload["type"]
            for item in charger.queue
            if item.action == "SecurityEventNotification"
        ]
        assert events == ["InvalidCentralSystemCertificate"]
    finally:
        await secure.stop()


async def test_hostile_certificate_frames_get_a_call_error_and_the_charger_runs_on(csms):
    charger = runtime_charger("CERT-7", csms.url, evses=1)
    async with connected(charger):
        frames = {
            "m1": '[2,"m1","CertificateSigned",{"certificateChain":42}]',
            "m2": '[2,"m2","InstallCertificate",{"certificateType":"Other","certificate":"x"}]',
            "m3": '[2,"m3","DeleteCertificate",{"certificateHashData":{"hashAlgorithm":"MD5"}}]',
            "m4": '[2,"m4","CertificateSigned",{"certificateChain":"' + "A" * 10_001 + '"}]',
        }
        for unique_id, text in frames.items():
            await csms.send_raw("CERT-7", text)
            answer = await csms.wait_for("CERT-7", unique_id=unique_id)
            assert answer.message_type == 4, text[:60]
        assert await csms.install_certificate("CERT-7", csms.ca.root_pem) == "Accepted"


# -- persistence -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_the_store_survives_a_restart_with_its_key_sealed(csms):
    await database_sync_to_async(make_charger)("CERT-DB", evses=1, csms_url=csms.url)
    async with running("CERT-DB") as charger:
        assert await csms.install_certificate("CERT-DB", csms.ca.root_pem) == "Accepted"
        await obtain_certificate(csms, charger)
        key = charger.certificates.private_key_pem()
        chain = charger.certificates.chain_pem
    row = await database_sync_to_async(CertificateStoreRecord.objects.get)(
        charger__charge_point_id="CERT-DB"
    )
    assert row.certificates["chain"] == chain
    assert "PRIVATE KEY" not in row.sealed_keys and "PRIVATE KEY" not in str(row.certificates)
    async with running("CERT-DB") as again:
        assert again.certificates.private_key_pem() == key
        assert again.certificates.chain_pem == chain
        assert len(again.certificates.roots) == 1
