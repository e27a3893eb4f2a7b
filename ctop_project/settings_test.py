"""Test settings: the production settings with a throwaway key and a Redis database of their own.

Tests flush their Redis database, so they never use REDIS_URL (which may point at a running ctop).
"""

import os
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "insecure-test-only-key")
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECURE_SSL_REDIRECT", "false")

from ctop_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation in tests

# Tests never run collectstatic: WhiteNoise finds static files in the apps instead, and its root
# exists (empty) so it has nothing to warn about.
WHITENOISE_USE_FINDERS = True
Path(str(STATIC_ROOT)).mkdir(parents=True, exist_ok=True)  # noqa: F405
