import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from chargers.models import Charger, ConfigurationKey, Evse
from simulator.contract import config_keys
from tests.cast import make_charger, make_location

pytestmark = pytest.mark.django_db


@pytest.fixture
def location():
    return make_location()


def charger(location, **fields):
    fields.setdefault("charge_point_id", "CP-1")
    return Charger(location=location, **fields)


@pytest.mark.parametrize(
    ("cp_id", "message"),
    [
        ("CP 1", "not URL-safe"),
        ("CP/1", "not URL-safe"),
        ("CP?1", "not URL-safe"),
        ("ÄCP", "not URL-safe"),
        ("X" * 49, "at most 48"),
    ],
)
def test_bad_charge_point_ids_are_rejected(location, cp_id, message):
    with pytest.raises(ValidationError, match=message):
        charger(location, charge_point_id=cp_id).full_clean()


def test_a_url_safe_id_of_48_characters_is_accepted(location):
    charger(location, charge_point_id="A-b_c.d~" + "9" * 40).full_clean()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://csms.example.com/ocpp", "must start with ws:// or wss://"),
        ("csms.example.com", "must start with ws:// or wss://"),
        ("ws://", "names no host"),
        ("ws://host:99999/ocpp", "not a valid URL"),
        ("ws://host/ocpp?x=1", "must not have a query"),
        ("ws://cp1:s3cret@host/ocpp", "must not hold a user name or password"),
        ("wss://token@host/ocpp", "must not hold a user name or password"),
        # Taken before, and the charger then never connected ("a b" is no host).
        ("ws://csms 9000/ocpp", "must not hold spaces"),
        ("ws://host/oc\tpp", "must not hold spaces"),
    ],
)
def test_bad_csms_urls_are_rejected(location, url, message):
    with pytest.raises(ValidationError, match=message):
        charger(location, csms_url=url).full_clean()


def test_a_bad_url_with_a_password_is_refused_without_showing_it(location):
    with pytest.raises(ValidationError, match="not a valid URL") as info:
        charger(location, csms_url="ws://cp1:s3cret@host:99999/ocpp").full_clean()
    assert "s3cret" not in str(info.value)
    assert "ws://***@host:99999/ocpp" in str(info.value)


def test_tls_profiles_need_wss_and_credentials(location):
    with pytest.raises(ValidationError) as info:
        charger(location, csms_url="ws://h/ocpp", security_profile=2).full_clean()
    assert "needs a wss:// CSMS URL" in str(info.value)
    assert "needs an AuthorizationKey" in str(info.value)
    with pytest.raises(ValidationError, match="needs a client certificate: a certificate and"):
        charger(location, csms_url="wss://h/ocpp", security_profile=3).full_clean()
    charger(
        location, csms_url="wss://h/ocpp", security_profile=2, authorization_key="0123456789abcdef"
    ).full_clean()


def test_duplicate_connector_ids_are_refused(location):
    cp = make_charger(location=location, evses=1)
    with pytest.raises(ValidationError, match="already exists"):
        Evse(charger=cp, connector_id=1, max_power_kw=11).full_clean()
    with pytest.raises(IntegrityError):
        Evse.objects.create(charger=cp, connector_id=1, max_power_kw=11)


def test_connector_ids_start_at_one(location):
    cp = make_charger(location=location, evses=0)
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        Evse(charger=cp, connector_id=0, max_power_kw=11).full_clean()


def test_the_meter_register_never_goes_back(location):
    cp = make_charger(location=location, evses=1)
    evse = cp.evses.get()
    evse.register_wh = 1500
    evse.save()
    evse.register_wh = 1000
    with pytest.raises(ValidationError, match="never goes back"):
        evse.full_clean()


def test_a_new_charger_gets_the_core_configuration_defaults(location):
    cp = make_charger(location=location)
    stored = dict(cp.configuration.values_list("key", "value"))
    expected = config_keys.defaults(1)
    assert set(stored) == set(expected)
    assert stored["HeartbeatInterval"] == "300"
    assert "AuthorizationKey" not in stored
    readonly = set(cp.configuration.filter(readonly=True).values_list("key", flat=True))
    assert {"NumberOfConnectors", "GetConfigurationMaxKeys", "SupportedFeatureProfiles"} <= readonly


def test_configuration_values_are_checked_by_type(location):
    cp = make_charger(location=location)
    key = ConfigurationKey(charger=cp, key="HeartbeatInterval", value="often")
    with pytest.raises(ValidationError, match="whole number"):
        key.full_clean()
    key = ConfigurationKey(charger=cp, key="MeterValuesSampledData", value="Energy.Reactive")
    with pytest.raises(ValidationError, match="unsupported measurand"):
        key.full_clean()


def test_a_certificate_its_csms_signed_is_a_profile_3_client_certificate(location):
    """It was refused ("needs a client certificate and key path") though the charger had
    one from SignCertificate / CertificateSigned, and connected with it."""
    from chargers.models import CertificateStoreRecord

    signed = charger(location, csms_url="wss://h/ocpp", security_profile=2)
    signed.authorization_key = "0123456789abcdef"
    signed.save()
    CertificateStoreRecord.objects.create(charger=signed, certificates={"roots": [], "chain": ""})
    signed.security_profile = 3
    with pytest.raises(ValidationError, match="needs a client certificate"):
        signed.full_clean()
    CertificateStoreRecord.objects.filter(charger=signed).update(
        certificates={"roots": [], "chain": "-----BEGIN CERTIFICATE-----..."}
    )
    signed.full_clean()
