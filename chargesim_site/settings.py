"""ChargeSim settings, driven by environment variables.

Every variable has a default that runs on one machine with nothing installed:
SQLite in ./var, an in-memory channel layer, Celery tasks run eagerly.
Set DATABASE_URL (PostgreSQL) and REDIS_URL to scale out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from chargesim_site.env import (
    env_bool,
    env_database,
    env_float,
    env_int,
    env_list,
    env_proxy_ssl_header,
    env_redis_url,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("CHARGESIM_VAR_DIR", str(BASE_DIR / "var")))


def _private_var_dir() -> None:
    """The embedded mode keeps its database (charger credentials, sealed or not, the
    message log), SECRET_KEY and the admin's first password here: for this user alone.
    SQLite creates its files (and their -wal) readable by all under the usual umask, so
    the directory is what keeps them private. A directory named by CHARGESIM_VAR_DIR that
    already exists is the operator's to set; the default one is made private."""
    # A read-only file system (a container with its database elsewhere) is not an error
    # here: whatever needs the directory says so when it does.
    with contextlib.suppress(OSError):
        if not VAR_DIR.exists():
            VAR_DIR.mkdir(mode=0o700, parents=True)
        elif VAR_DIR == BASE_DIR / "var" and VAR_DIR.stat().st_mode & 0o077:
            VAR_DIR.chmod(0o700)


if not env_str("DATABASE_URL", ""):  # the embedded mode's SQLite file is made here
    _private_var_dir()

DEBUG = env_bool("DEBUG", True)
# Error pages (DEBUG on) and reports hide secrets by their place too, not only their name.
DEFAULT_EXCEPTION_REPORTER_FILTER = "chargesim_site.error_reports.SecretsHiddenFilter"


def _secret_key() -> str:
    key = env_str("SECRET_KEY", "")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # Development: generate once into an untracked file so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    path.write_text(key)
    path.chmod(0o600)
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The admin's "delete selected" confirmation posts one field per selected row (Django's
# form): at Django's 1,000, confirming the deletion of 3,000 imported chargers answered
# "Bad Request (400)" and deleted nothing. Room for a whole fleet of the sizes a worker
# runs (about 25 bytes a field: 50,000 stay within DATA_UPLOAD_MAX_MEMORY_SIZE).
DATA_UPLOAD_MAX_NUMBER_FIELDS = 50_000

# HTTPS. On by default with DEBUG off, so that `check --deploy` is clean; each can be
# turned off, e.g. the secure cookies and the redirect behind plain HTTP (docker-compose.yml).
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
# Off unless asked: with `preload` in the header anyone may submit the domain to the
# browsers' preload list, which is slow to undo.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
# Behind a TLS-terminating proxy only (e.g. X-Forwarded-Proto=https): see env.py.
SECURE_PROXY_SSL_HEADER = env_proxy_ssl_header("SECURE_PROXY_SSL_HEADER")

INSTALLED_APPS = [
    "daphne",  # before staticfiles so that runserver is Daphne's
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "locations",
    "vehicles",
    "chargers",
    "fleet_io",  # before import_export: its `import` and `export` commands win
    "simulator",
    "import_export",
    # The automation API (issue 15); "ninja" for its docs page's templates and static files.
    "ninja",
    "api",
    # Scenarios with verdicts (issue 16): the format, the runner, stored runs.
    "scenarios",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files with DEBUG off too, under Daphne (ASGI) as under any server.
    "chargesim_site.static_files.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "chargesim_site.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "chargesim_site.asgi.application"
WSGI_APPLICATION = None

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Under ASGI every request runs in a fresh thread; persistent connections would leak.
DATABASES["default"]["CONN_MAX_AGE"] = 0
# The page size of a new SQLite database (an existing one keeps its own). The engine's
# writes are mostly rows of about 1 KB (a MeterValues in the outbox and in the message log),
# thousands a second: with 16 KiB pages the WAL and its checkpoints write the same bytes in
# a quarter of the pages, and the writer's CPU per message fell by about a third
# (`bench/sqlite_pages.py`, bench/RESULTS.md). SQLite allows powers of two, 512 to 65,536.
SQLITE_PAGE_SIZE = env_int("CHARGESIM_SQLITE_PAGE_SIZE", 16_384, minimum=512, maximum=65_536)
if SQLITE_PAGE_SIZE & (SQLITE_PAGE_SIZE - 1):
    raise ImproperlyConfigured(
        f"CHARGESIM_SQLITE_PAGE_SIZE={SQLITE_PAGE_SIZE} is not a power of two (512 to 65536)."
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # WAL lets the web side read while the engine writes its checkpoints. The page
            # size first: it takes effect only before the database's first write, and
            # switching to WAL writes the file's header.
            "init_command": f"PRAGMA page_size={SQLITE_PAGE_SIZE}; "
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "timeout": 20,
            # Every transaction takes the write lock when it begins, waiting up to the
            # timeout above. A deferred one that read first can never write once another
            # connection has committed since its read (WAL's BUSY_SNAPSHOT): SQLite fails
            # it at once with "database is locked", whatever the timeout. That was an
            # admin save answered with a 500 while the engine wrote a checkpoint.
            "transaction_mode": "IMMEDIATE",
        }
    )
    # Tests get a file, as production has, not Django's shared-cache in-memory database:
    # there a second thread (the live server, a background import) meets "table is
    # locked" at once instead of waiting out the timeout above.
    # One file per test process: two runs in one checkout must not share (or delete) it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []
# WhiteNoise serves STATIC_ROOT (what `collectstatic` gathered) and, through the finders,
# the apps' own files: `make run` needs no collectstatic step, DEBUG on or off.
WHITENOISE_USE_FINDERS = True
# Files browsers ask for at the site's root (/favicon.ico, which the admin's pages
# request too): served by the same middleware, so no view and no 404 in the log.
WHITENOISE_ROOT = BASE_DIR / "chargesim_site" / "root_files"

# The dashboard's login (staff or not); the admin keeps its own, for staff only.
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"

REDIS_URL = env_redis_url("REDIS_URL")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis's layer, counting the messages full channels refuse (metrics).
            "BACKEND": "simulator.runtime.channel_layers.CountingRedisChannelLayer",
            # redis-py reads with a 5 s socket timeout while channels-redis blocks 5 s for a
            # message: an idle channel would time out and drop the browser's socket.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": 30}],
                "capacity": 1500,
                "expiry": 30,
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            # Channels' in-memory layer, counting the messages full channels refuse (metrics).
            "BACKEND": "simulator.runtime.channel_layers.CountingInMemoryChannelLayer",
            "CONFIG": {"capacity": 1500},
        }
    }

# The cache carries import progress between a Celery worker and the web process.
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }

# Celery: with no Redis, tasks run in-process (eagerly) so nothing else needs to run.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = REDIS_URL is None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_TRACK_STARTED = True

# Simulator knobs.
CHARGESIM_TICK_SECONDS = env_float("CHARGESIM_TICK_SECONDS", 1.0, minimum=0.05, maximum=60)
CHARGESIM_CHECKPOINT_SECONDS = env_float(
    "CHARGESIM_CHECKPOINT_SECONDS", 1.0, minimum=0.05, maximum=300
)
CHARGESIM_RECONNECT_CAP_SECONDS = env_float(
    "CHARGESIM_RECONNECT_CAP_SECONDS", 60.0, minimum=0.1, maximum=3600
)
# How many chargers a worker starts connecting per second when it connects many at once
# (start-up, a large import, a bulk connect or reboot, the reconnects after a CSMS outage:
# simulator/runtime/connect_ramp.py); 0 = all at once. Off by default: a load test of a
# CSMS's boot storm and the demo get what they got before; a user whose CSMS cannot take
# the fleet's handshakes in one second sets a rate.
CHARGESIM_CONNECT_RATE = env_float("CHARGESIM_CONNECT_RATE", 0.0, minimum=0, maximum=100_000)
# Messages a charger queues (offline, or behind a slow CSMS) before it drops every second of
# its queued periodic samples (simulator/core/outbox.py, `Outbox.thin`); Start, Stop and
# clock-aligned samples are always kept. Bounds a long outage's memory, 2 to 3 KB a
# queued MeterValues: 500 is 1 to 1.5 MB a charger. 0 = no bound.
CHARGESIM_OFFLINE_QUEUE_LIMIT = env_int(
    "CHARGESIM_OFFLINE_QUEUE_LIMIT", 500, minimum=0, maximum=10_000_000
)
CHARGESIM_EVENTS_PER_SECOND = env_float(
    "CHARGESIM_EVENTS_PER_SECOND", 2.0, minimum=0.1, maximum=100
)
CHARGESIM_MESSAGE_LOG_LIMIT = env_int("CHARGESIM_MESSAGE_LOG_LIMIT", 100, minimum=0)
CHARGESIM_MESSAGE_LOG_BYTES = env_int("CHARGESIM_MESSAGE_LOG_BYTES", 24 * 1024, minimum=1024)
# The stored message log (issue 15, read through the API): every frame and connection event
# of every charger, written with the checkpoints and pruned to these bounds.
CHARGESIM_MESSAGE_LOG_STORE = env_bool("CHARGESIM_MESSAGE_LOG_STORE", True)
CHARGESIM_MESSAGE_LOG_MAX_ROWS = env_int(
    "CHARGESIM_MESSAGE_LOG_MAX_ROWS", 1_000_000, minimum=1_000, maximum=10**10
)
CHARGESIM_MESSAGE_LOG_MAX_DAYS = env_float(
    "CHARGESIM_MESSAGE_LOG_MAX_DAYS", 7.0, minimum=0.001, maximum=3650
)
CHARGESIM_MESSAGE_LOG_PAYLOAD_CHARS = env_int(
    "CHARGESIM_MESSAGE_LOG_PAYLOAD_CHARS", 65_536, minimum=256, maximum=2**20
)
# Freeze the loaded and connected fleet out of the garbage collector's sight and collect
# young objects less often (simulator/runtime/gc_policy.py): at fleet scale CPython's defaults
# cost about a quarter of the worker's CPU and 100-350 ms pauses.
CHARGESIM_GC_TUNING = env_bool("CHARGESIM_GC_TUNING", True)
CHARGESIM_DEFAULT_CSMS_URL = env_str("CHARGESIM_DEFAULT_CSMS_URL", "ws://127.0.0.1:9000/ocpp")
# Whether the environment names it: if not, a process running the built-in CSMS
# (`runsimulator --demo`) gives new chargers that CSMS's URL instead, whatever its port
# (chargers/default_csms.py).
CHARGESIM_DEFAULT_CSMS_URL_GIVEN = "CHARGESIM_DEFAULT_CSMS_URL" in os.environ
# How many `runsimulator --shard K/N` workers run (N): the web side routes a charger's
# commands to the worker of shard_of(charge point id, N).
CHARGESIM_SHARDS = env_int("CHARGESIM_SHARDS", 1, minimum=1, maximum=1024)
# How many scenario runs started through the API or the dashboard may be queued or running
# at once; one more is refused (429) until one finishes.
CHARGESIM_SCENARIO_RUNS = env_int("CHARGESIM_SCENARIO_RUNS", 4, minimum=1, maximum=1000)
# A file with more rows than this is not previewed row by row in the admin's request: a
# background dry run checks it (fleet_io/import_admin.py).
CHARGESIM_IMPORT_PREVIEW_ROWS = env_int(
    "CHARGESIM_IMPORT_PREVIEW_ROWS", 2000, minimum=1, maximum=1_000_000
)

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").strip().upper()
if LOG_LEVEL not in LOG_LEVELS:  # logging's own refusal is a traceback about the root logger
    raise ImproperlyConfigured(
        f"LOG_LEVEL={env_str('LOG_LEVEL', '')!r} is not one of {', '.join(LOG_LEVELS)}."
    )

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # One line a record: a CSMS's words in a message cannot forge lines nor send escapes.
    "formatters": {
        "plain": {
            "()": "simulator.runtime.log_lines.OneLineFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        }
    },
    # Loggers that may write a frame's text redact an AuthorizationKey in it (a filter of a
    # logger applies to its own records only, hence one entry per logger).
    "filters": {
        "redact_secrets": {"()": "simulator.ocpp16.redaction.RedactSecrets"},
        "count_group_drops": {"()": "simulator.runtime.channel_layers.CountGroupDrops"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's own configuration gives "django" a console handler of its own (with
        # DEBUG on): each 4xx warning was printed twice, bare and formatted. Root's only.
        "django": {"handlers": [], "level": "INFO"},
        # The ocpp library logs every frame at INFO; our own message log keeps them.
        "ocpp": {"level": "WARNING", "filters": ["redact_secrets"]},
        "chargesim.ocpp.frames": {"filters": ["redact_secrets"]},
        "simulator.ocpp16.client": {"filters": ["redact_secrets"]},
        "websockets": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # The built-in CSMS logs every frame at INFO when run alone; embedded, the
        # dashboard's message log has them.
        "simulator.csms": {"filters": ["redact_secrets"]},
        "simulator.csms.frames": {"level": "WARNING", "filters": ["redact_secrets"]},
        "simulator.csms.websockets": {"level": "WARNING"},
        # A Redis group_send's messages that full channels refused are counted from this
        # logger's INFO record (metrics); the filter shows it only at LOG_LEVEL INFO or lower.
        "channels_redis.core": {"level": "INFO", "filters": ["count_group_drops"]},
    },
}
