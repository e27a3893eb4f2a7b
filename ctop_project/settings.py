"""Settings for ctop, read from the environment (12-factor, django-environ).

Every variable is listed in `.env.example` and in the README. Defaults make a fresh checkout run
against the local PostgreSQL and Redis; production must set SECRET_KEY (and leave DEBUG off).
"""

import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env file is optional; real environment variables win over it.
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set SECRET_KEY in the environment or in .env "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or set DEBUG=true for local development."
        )
    SECRET_KEY = "insecure-development-key-debug-only"  # noqa: S105 - only reachable with DEBUG on

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "consensus",
    "validators",
    "analysis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (admin CSS and JS) served by the app server itself, compressed and cached, also
    # with DEBUG off: no separate web server needed for a small team's dashboard.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ctop_project.urls"

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

WSGI_APPLICATION = "ctop_project.wsgi.application"
ASGI_APPLICATION = "ctop_project.asgi.application"


def _application_name(argv: list[str]) -> str:
    """Label each process's PostgreSQL connection so it can be found in pg_stat_activity."""
    if len(argv) > 1 and Path(argv[0]).name == "manage.py":
        return f"ctop:{argv[1]}"[:63]
    return f"ctop:{Path(argv[0]).name}"[:63] if argv else "ctop"


DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ctop"),
}
DATABASES["default"].setdefault("OPTIONS", {})
DATABASES["default"]["OPTIONS"].setdefault("application_name", _application_name(sys.argv))
DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 5)
# Long-running commands reconnect after PostgreSQL restarts; web requests reuse connections.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "ctop-cache",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 2, "SOCKET_TIMEOUT": 2},
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "ctop-channels"},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies made by collectstatic (bootstrap runs it); no manifest, so a page never fails
    # for a file collectstatic has not seen yet.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
STATIC_ROOT = env.path("STATIC_ROOT", default=BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").is_dir() else []

# The team's own sign-in pages (any active account), not the admin's (staff only).
LOGIN_URL = "login"
# Each record's page (the admin's "view on site", links in pages and messages). Page knowledge
# stays with the pages: the consensus models do not know the analysis app's URL names.
ABSOLUTE_URL_OVERRIDES = {
    "consensus.chain": lambda chain: reverse("analysis:chain", args=[chain.name]),
    "consensus.validator": lambda v: reverse("analysis:validator", args=[v.chain.name, v.address]),
}
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = None  # the "signed out" page

# Production hardening; each can be relaxed through the environment (e.g. behind a TLS proxy).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django": {
            "handlers": ["console"],
            "level": "INFO" if LOG_LEVEL == "DEBUG" else LOG_LEVEL,
            "propagate": False,
        },
        # At DEBUG these log every request line, webhook paths (secrets) included: never below WARNING.
        "urllib3": {"level": "WARNING"},
        "requests": {"level": "WARNING"},
        "websocket": {"level": "WARNING"},
    },
}

# ctop's own knobs (see README "Configuration").
CTOP = {
    # Redis Stream length bound per chain (MAXLEN ~). A vote frame is ~700 bytes, so the default
    # holds ~2M entries (~1.4 GB): hours of backlog for a busy chain. Trimming loses data, so the
    # subscriber warns loudly when the consumer lags close to it.
    "STREAM_MAXLEN": env.int("CTOP_STREAM_MAXLEN", default=2_000_000),
    "STREAM_PREFIX": env.str("CTOP_STREAM_PREFIX", default="ctop:events:"),
    # Trust boundaries (README "Trust boundaries"): what one endpoint may cost ctop at most.
    # The largest HTTP reply read (a /commit of 10,000 validators is ~2 MB; /validators pages of 100
    # are ~30 kB); anything longer is refused.
    "HTTP_MAX_BYTES": env.int("CTOP_HTTP_MAX_MB", default=8) * 2**20,
    # The largest websocket message accepted (subscribe_events --max-frame-kb): the events ctop
    # subscribes to are under 2 kB (a vote is ~640 bytes); a longer frame drops the connection.
    "WS_MAX_FRAME_BYTES": env.int("CTOP_WS_MAX_FRAME_KB", default=1024) * 1024,
    # Dead letters keep at most this much of the refused frame or entry (and its full length).
    "DEAD_LETTER_MAX_BYTES": env.int("CTOP_DEAD_LETTER_MAX_KB", default=64) * 1024,
    # Heights accepted either side of the chain's plausible current height (subscribe_events
    # --plausible-heights); see consensus.subscriber.window.
    "PLAUSIBLE_HEIGHTS": env.int("CTOP_PLAUSIBLE_HEIGHTS", default=100),
    # The fastest a chain is believed to make blocks (heights a second): the plausible window grows at
    # this rate, and a liar can run ahead no faster. Real chains make at most a few.
    "MAX_BLOCKS_PER_SECOND": env.float("CTOP_MAX_BLOCKS_PER_SECOND", default=10.0),
    # /metrics (Prometheus) is not public: a scraper presents this bearer token, or comes from one of
    # these networks (CIDRs). Neither set: /metrics answers 403 to everyone.
    "METRICS_TOKEN": env.str("CTOP_METRICS_TOKEN", default=""),
    "METRICS_ALLOW": env.list("CTOP_METRICS_ALLOW", default=[]),
    # Validator gauges over the last N judged heights of each chain.
    "METRICS_WINDOW": env.int("CTOP_METRICS_WINDOW", default=100),
    # Storage (README "Storage"). Heights per vote partition, fixed for a chain when it is added: a
    # week of a 6 s chain, a day of a 0.9 s one. Retention drops whole partitions.
    "PARTITION_HEIGHTS": env.int("CTOP_PARTITION_HEIGHTS", default=100_000),
    # Keep each vote's 64-byte signature. Off: ctop never verifies them (the chain's commit holds the
    # canonical precommit signatures), and they would be over half of every vote row.
    "VOTE_SIGNATURES": env.bool("CTOP_VOTE_SIGNATURES", default=False),
}


def _public_base_url(value: str) -> str:
    """CTOP_BASE_URL checked: http(s), a host, no credentials, query or fragment (it is put into
    every notification). Errors never repeat the value: it might hold a password."""
    value = value.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured("CTOP_BASE_URL must be an http:// or https:// URL with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            "CTOP_BASE_URL must not carry credentials, a query or a fragment: it is shown in every notification"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


# The team's public address of ctop (scheme://host[:port][/prefix]): notifications link to the
# alert's page under it. Unset: messages carry no link.
CTOP["BASE_URL"] = _public_base_url(env.str("CTOP_BASE_URL", default=""))

# Mail, for the email notification channel: EMAIL_URL as django-environ reads it (smtp://host:25,
# smtp+tls://user:password@host:587 for STARTTLS, smtp+ssl://...:465 for implicit TLS,
# consolemail:// to print instead). The password is never logged.
globals().update(env.email_url("EMAIL_URL", default="smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="ctop@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
EMAIL_TIMEOUT = 10  # seconds: a mail server that never answers must not hold a notifier thread

if CTOP["PARTITION_HEIGHTS"] < 1000:
    raise ImproperlyConfigured(
        f"CTOP_PARTITION_HEIGHTS must be at least 1000 (got {CTOP['PARTITION_HEIGHTS']}): a partition per few"
        " heights would make thousands of tables"
    )
