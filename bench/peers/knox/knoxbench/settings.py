"""The knox peer's settings: one authenticated endpoint, nothing else. The database comes from
KNOX_DB_* (set by bench/peers/knox.py to the bench's private PostgreSQL)."""

import os

SECRET_KEY = "tessera-bench-knox-peer-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "knoxbench.urls"
WSGI_APPLICATION = "knoxbench.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "rest_framework", "knox"]
# No middleware: authentication is DRF's, per view; this is the peer at its fastest.
MIDDLEWARE = []

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("KNOX_DB_NAME", "knox"),
        "USER": os.environ.get("KNOX_DB_USER", "tessera"),
        "HOST": os.environ.get("KNOX_DB_HOST", "127.0.0.1"),
        "PORT": os.environ.get("KNOX_DB_PORT", "5432"),
        "CONN_MAX_AGE": None,  # persistent connections, one per worker thread
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["knox.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
}
REST_KNOX = {"AUTO_REFRESH": False}  # the default: verification reads, never writes

# Errors only, to stderr (gunicorn's error log); no line per request.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "ERROR"},
}
