"""Security profiles 1-3 against the built-in CSMS over TLS, with a throwaway CA."""

from __future__ import annotations

import ssl

import pytest
import trustme

from simulator.core.charge_point import BootState
from simulator.csms import CentralSystem
from tests.engine import connected, runtime_charger, wait_until


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def tls_csms(ca, *, client_certs: bool) -> CentralSystem:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if client_certs:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    server = CentralSystem()
    await server.start(host="127.0.0.1", port=0, ssl=context)
    return server


def wss(server: CentralSystem) -> str:
    return server.url.replace("ws://", "wss://")


async def test_profile_2_boots_when_the_ca_is_trusted(ca, ca_file):
    server = await tls_csms(ca, client_certs=False)
    server.passwords = {"TLS-2": "0123456789abcdef"}
    try:
        charger = runtime_charger(
            "TLS-2",
            wss(server),
            evses=1,
            security_profile=2,
            authorization_key="0123456789abcdef",
            ca_bundle_path=ca_file,
        )
        async with connected(charger):
            assert charger.boot is BootState.ACCEPTED
    finally:
        await server.stop()


async def test_profile_2_refuses_a_server_signed_by_another_ca(ca, tmp_path):
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    server = await tls_csms(ca, client_certs=False)
    try:
        charger = runtime_charger(
            "TLS-BAD",
            wss(server),
            evses=1,
            security_profile=2,
            authorization_key="0123456789abcdef",
            ca_bundle_path=str(other),
        )
        async with connected(charger, booted=False):
            await wait_until(lambda: charger.link_error != "", message="a TLS error")
        assert charger.link_error.startswith("certificate not trusted")
        assert charger.boot is BootState.NONE
    finally:
        await server.stop()


async def test_profile_3_needs_the_client_certificate(ca, ca_file, tmp_path):
    cert = ca.issue_cert("TLS-3")
    cert_path, key_path = tmp_path / "cp.pem", tmp_path / "cp.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    server = await tls_csms(ca, client_certs=True)
    try:
        good = runtime_charger(
            "TLS-3",
            wss(server),
            evses=1,
            security_profile=3,
            ca_bundle_path=ca_file,
            client_cert_path=str(cert_path),
            client_key_path=str(key_path),
        )
        async with connected(good):
            assert good.boot is BootState.ACCEPTED
        without = runtime_charger(
            "TLS-3X",
            wss(server),
            evses=1,
            security_profile=2,
            authorization_key="0123456789abcdef",
            ca_bundle_path=ca_file,
        )
        async with connected(without, booted=False):
            await wait_until(lambda: without.link_error != "", message="a handshake failure")
        assert without.boot is BootState.NONE
        missing = runtime_charger(
            "TLS-3M",
            wss(server),
            evses=1,
            security_profile=3,
            ca_bundle_path=ca_file,
            client_cert_path="/nonexistent.pem",
            client_key_path="/nonexistent.key",
        )
        async with connected(missing, booted=False):
            await wait_until(lambda: missing.link_error != "", message="a clear error")
        assert missing.link_error.startswith("client certificate or key cannot be loaded")
    finally:
        await server.stop()


async def test_profile_1_with_wrong_credentials_reports_and_keeps_retrying(caplog):
    server = CentralSystem()
    await server.start(host="127.0.0.1", port=0)
    server.passwords = {"TLS-1": "right-password-16"}
    try:
        charger = runtime_charger(
            "TLS-1", server.url, evses=1, security_profile=1, authorization_key="wrong-password-16"
        )
        async with connected(charger, booted=False):
            # Read the error while the charger waits to retry: once the connection task is
            # cancelled (or a new attempt starts) the reason is no longer the 401.
            await wait_until(
                lambda: (
                    len([r for r in server.refusals if r.cp_id == "TLS-1"]) >= 2
                    and charger.link_error == "CSMS rejected credentials (401)"
                ),
                timeout=6,
                message="a retry after the 401, reported as such",
            )
        assert "wrong-password-16" not in caplog.text
    finally:
        await server.stop()
