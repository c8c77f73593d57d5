import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from chargesim_site.env import (
    POSTGRES_TIMEOUTS,
    env_bool,
    env_database,
    env_float,
    env_int,
    env_list,
    env_proxy_ssl_header,
    env_redis_url,
)

BASE_DIR = Path(__file__).resolve().parent.parent


def test_it_reads_booleans_in_the_usual_spellings():
    assert env_bool("X", False, {"X": "Yes"}) is True
    assert env_bool("X", True, {"X": "off"}) is False
    assert env_bool("X", True, {}) is True


@pytest.mark.parametrize(
    ("reader", "raw"),
    [
        (lambda env: env_bool("CHARGESIM_FLAG", False, env), "maybe"),
        (lambda env: env_int("CHARGESIM_FLAG", 1, env), "ten"),
        (lambda env: env_float("CHARGESIM_FLAG", 1.0, env), "fast"),
        (lambda env: env_float("CHARGESIM_FLAG", 1.0, env), "nan"),
    ],
)
def test_a_bad_value_names_the_variable(reader, raw):
    with pytest.raises(ImproperlyConfigured, match="CHARGESIM_FLAG"):
        reader({"CHARGESIM_FLAG": raw})


def test_it_enforces_ranges_and_names_the_variable():
    with pytest.raises(ImproperlyConfigured, match="CHARGESIM_TICK_SECONDS.*minimum"):
        env_float("CHARGESIM_TICK_SECONDS", 1.0, {"CHARGESIM_TICK_SECONDS": "0"}, minimum=0.05)
    with pytest.raises(ImproperlyConfigured, match="N.*maximum"):
        env_int("N", 1, {"N": "11"}, maximum=10)


def test_a_value_out_of_range_is_said_as_written():
    """Said as read, "-5" was "-5.0", and "1e999" was "inf": not what the user wrote."""
    with pytest.raises(ImproperlyConfigured) as raised:
        env_float("RATE", 0.0, {"RATE": " 1e999"}, minimum=0, maximum=100_000)
    assert str(raised.value) == "RATE=' 1e999' is above the maximum 100000."
    with pytest.raises(ImproperlyConfigured) as raised:
        env_float("TICK", 1.0, {"TICK": "0"}, minimum=0.05)
    assert str(raised.value) == "TICK='0' is below the minimum 0.05."


def test_it_splits_lists():
    assert env_list("ALLOWED_HOSTS", ["a"], {"ALLOWED_HOSTS": "x.com, y.com,"}) == [
        "x.com",
        "y.com",
    ]
    assert env_list("ALLOWED_HOSTS", ["a"], {}) == ["a"]


def test_database_url_supports_sqlite_and_postgres():
    sqlite = env_database("DATABASE_URL", "sqlite:////tmp/x.sqlite3", {})
    assert sqlite["ENGINE"] == "django.db.backends.sqlite3"
    pg = env_database("DATABASE_URL", "", {"DATABASE_URL": "postgres://u:pw@db:5432/fleet"})
    assert pg["ENGINE"] == "django.db.backends.postgresql"
    assert (pg["NAME"], pg["HOST"], pg["PORT"]) == ("fleet", "db", 5432)


def test_a_postgresql_connection_gets_timeouts_and_the_url_can_change_them():
    pg = env_database("DATABASE_URL", "", {"DATABASE_URL": "postgres://u@db/fleet"})
    assert pg["OPTIONS"] == POSTGRES_TIMEOUTS
    tuned = env_database(
        "DATABASE_URL", "", {"DATABASE_URL": "postgres://u@db/fleet?keepalives_idle=5"}
    )
    assert tuned["OPTIONS"]["keepalives_idle"] == 5
    assert tuned["OPTIONS"]["tcp_user_timeout"] == POSTGRES_TIMEOUTS["tcp_user_timeout"]
    sqlite = env_database("DATABASE_URL", "sqlite:////tmp/x.sqlite3", {})
    assert not set(POSTGRES_TIMEOUTS) & set(sqlite.get("OPTIONS", {}))


@pytest.mark.django_db
def test_the_live_postgresql_connection_has_the_timeouts():
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL: libpq's parameters of the live connection")
    connection.ensure_connection()
    parameters = connection.connection.info.get_parameters()
    assert {key: int(parameters[key]) for key in POSTGRES_TIMEOUTS} == POSTGRES_TIMEOUTS


def test_a_database_server_that_never_answers_fails_the_connection_instead_of_hanging():
    # A listener that accepts and then says nothing, as a half-open peer does: with the
    # timeouts the connection attempt ends with an error (libpq: connect_timeout).
    import socket
    import threading

    import psycopg

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    config = env_database(
        "DATABASE_URL", "", {"DATABASE_URL": f"postgres://u@127.0.0.1:{port}/fleet"}
    )
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            psycopg.connect(
                host="127.0.0.1", port=port, user="u", dbname="fleet", **config["OPTIONS"]
            ).close()
            outcome.append(None)
        except psycopg.OperationalError as exc:
            outcome.append(exc)

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(timeout=120)  # a guard against a hang, not a speed check
    server.close()
    for peer, _address in accepted:
        peer.close()
    assert accepted, "the client never reached the listener"
    assert outcome and isinstance(outcome[0], psycopg.OperationalError), outcome
    assert "timeout" in str(outcome[0]).lower()


def test_a_bad_database_url_is_named_without_leaking_the_password():
    with pytest.raises(ImproperlyConfigured) as info:
        env_database("DATABASE_URL", "", {"DATABASE_URL": "mysql://u:hunter2@db/fleet"})
    assert "DATABASE_URL" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_redis_url_is_optional_and_checked():
    assert env_redis_url("REDIS_URL", {}) is None
    assert env_redis_url("REDIS_URL", {"REDIS_URL": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
        env_redis_url("REDIS_URL", {"REDIS_URL": "http://127.0.0.1:6379"})


def start_django(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    """`django.setup()` in a fresh process with only these variables set."""
    env = {
        "PATH": os.environ["PATH"],
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env=env,
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
    )


def test_settings_refuse_to_start_without_secret_key_when_debug_is_off(tmp_path):
    result = start_django(tmp_path, DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


@pytest.mark.parametrize("raw", ["1000", "256", "131072", "big"])
def test_a_sqlite_page_size_sqlite_would_refuse_stops_start_up_naming_it(tmp_path, raw):
    result = start_django(tmp_path, CHARGESIM_SQLITE_PAGE_SIZE=raw)
    assert result.returncode != 0
    assert "CHARGESIM_SQLITE_PAGE_SIZE" in result.stderr


def test_development_secret_key_is_generated_once(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
    }
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        check=True,
    ).stdout
    second = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        check=True,
    ).stdout
    assert first == second and len(first.strip()) > 40
    assert (tmp_path / "secret_key").read_text().strip() == first.strip()


def test_redis_url_switches_the_channel_layer_and_celery(tmp_path):
    env = {
        "PATH": os.environ["PATH"],
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "REDIS_URL": "redis://127.0.0.1:6379/3",
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
    }
    code = (
        "from django.conf import settings as s; "
        "print(s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_TASK_ALWAYS_EAGER, "
        "s.CELERY_BROKER_URL)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        check=True,
    ).stdout.split()
    assert out == [
        "simulator.runtime.channel_layers.CountingRedisChannelLayer",
        "False",
        "redis://127.0.0.1:6379/3",
    ]


def test_the_proxy_ssl_header_is_a_header_and_its_value_or_nothing():
    assert env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER", {}) is None
    assert env_proxy_ssl_header(
        "SECURE_PROXY_SSL_HEADER", {"SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto=https"}
    ) == ("HTTP_X_FORWARDED_PROTO", "https")
    for bad in ("X-Forwarded-Proto", "X_Forwarded_Proto=https", "X-Forwarded-Proto=", "=https"):
        with pytest.raises(ImproperlyConfigured, match="SECURE_PROXY_SSL_HEADER"):
            env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER", {"SECURE_PROXY_SSL_HEADER": bad})


PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "kJ3v0-2rXq8ZpL1mN4bT7yWc9eRfHs6aUdGoIiQ5lVxEnMjKw_zC",
    "ALLOWED_HOSTS": "chargesim.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://chargesim.example.com",
}


def deploy_check(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
        **variables,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env,
        capture_output=True,
        text=True,
        cwd=BASE_DIR,
        timeout=120,
    )


def test_the_deploy_check_is_clean_with_production_values(tmp_path):
    result = deploy_check(tmp_path, **PRODUCTION, SECURE_HSTS_PRELOAD="true")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_with_debug_off_https_is_on_by_default_and_only_preload_is_left_to_choose(tmp_path):
    result = deploy_check(tmp_path, **PRODUCTION)
    assert result.returncode != 0
    assert "security.W021" in result.stderr
    assert "identified 1 issue" in result.stderr


def test_each_https_setting_can_be_turned_off_by_its_variable(tmp_path):
    result = deploy_check(
        tmp_path,
        **PRODUCTION,
        SECURE_HSTS_SECONDS="0",
        SECURE_SSL_REDIRECT="false",
        SESSION_COOKIE_SECURE="false",
        CSRF_COOKIE_SECURE="false",
    )
    for check in ("W004", "W008", "W012", "W016"):
        assert f"security.{check}" in result.stderr
    bad = deploy_check(tmp_path, **PRODUCTION, SECURE_SSL_REDIRECT="sometimes")
    assert bad.returncode != 0
    assert "SECURE_SSL_REDIRECT='sometimes' is not a boolean" in bad.stderr


def test_a_django_warning_is_printed_once(tmp_path):
    """Django's own logging gave "django" a console handler besides root's: every 4xx
    warning (a bad token, a 404) was printed twice, once bare and once formatted."""
    script = (
        "import django, logging; django.setup(); "
        "logging.getLogger('django.request').warning('Unauthorized: /api/v1/whoami')"
    )
    env = {
        "PATH": os.environ["PATH"],
        "CHARGESIM_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "chargesim_site.settings",
        "DEBUG": "true",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=BASE_DIR
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "/api/v1/whoami" in line]
    assert len(lines) == 1, lines
    assert "WARNING django.request: Unauthorized: /api/v1/whoami" in lines[0]


def manage_py(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """`manage.py ARGS` in a fresh process with only these variables set."""
    env = {"PATH": os.environ["PATH"], "CHARGESIM_VAR_DIR": str(tmp_path), **variables}
    return subprocess.run(
        [sys.executable, "manage.py", *args], env=env, capture_output=True, text=True, cwd=BASE_DIR
    )


@pytest.mark.parametrize(
    ("variable", "raw", "said"),
    [
        (
            "CHARGESIM_TICK_SECONDS",
            "abc",
            "Settings: CHARGESIM_TICK_SECONDS='abc' is not a number.",
        ),
        (
            "CHARGESIM_CONNECT_RATE",
            "-5",
            "Settings: CHARGESIM_CONNECT_RATE='-5' is below the minimum 0.",
        ),
        (
            "LOG_LEVEL",
            "loud",
            "Settings: LOG_LEVEL='loud' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL.",
        ),
    ],
)
def test_manage_py_says_a_bad_variable_in_one_line(tmp_path, variable, raw, said):
    """It was the last line of a 35-line traceback (LOG_LEVEL's, one about the root
    logger that did not name the variable at all)."""
    result = manage_py(tmp_path, "check", **{variable: raw})
    assert result.returncode == 2  # nothing ran, as for a bad option
    assert result.stderr.splitlines() == [said]


def test_runscenario_with_a_bad_variable_exits_2_not_as_a_csms_that_failed(tmp_path):
    """Exit 1 is `runscenario`'s verdict that the CSMS failed a check: a CI job read a
    mistyped variable of its own as a failing CSMS."""
    case = str(BASE_DIR / "scenarios" / "library" / "boot-accepted.yaml")
    result = manage_py(
        tmp_path, "runscenario", case, "--builtin-csms", CHARGESIM_TICK_SECONDS="abc"
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["Settings: CHARGESIM_TICK_SECONDS='abc' is not a number."]


def test_the_import_preview_limit_and_the_log_level_come_from_the_environment(tmp_path):
    code = (
        "from django.conf import settings; from fleet_io.import_admin import preview_rows; "
        "print(preview_rows(), settings.LOGGING['root']['level'])"
    )
    variables = {"CHARGESIM_IMPORT_PREVIEW_ROWS": "50", "LOG_LEVEL": "warning"}
    result = manage_py(tmp_path, "shell", "-c", code, **variables)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["50", "WARNING"]


def test_a_new_data_directory_is_for_this_user_alone(tmp_path):
    """The embedded mode's database (and its -wal) is created readable by all under the
    usual umask: the directory that holds it, with SECRET_KEY and the admin's password,
    keeps it private."""
    var = tmp_path / "var"
    result = start_django(tmp_path, CHARGESIM_VAR_DIR=str(var))
    assert result.returncode == 0, result.stderr
    assert var.stat().st_mode & 0o777 == 0o700
