# Shared by bin/run and bin/test: a virtual environment with the pinned requirements.
# Re-installs only when a requirements file changed (a hash stamp in .venv).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"

ensure_venv() {
    # $@: requirement files to install
    if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
        echo "ctop: Python 3.11 or newer is needed (tried '$PYTHON'; set PYTHON=/path/to/python3.11)" >&2
        exit 2
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        echo "ctop: creating the virtual environment in .venv"
        "$PYTHON" -m venv "$VENV" || { echo "ctop: could not create .venv (is python3-venv installed?)" >&2; exit 2; }
    fi
    local stamp="$VENV/.ctop-requirements" want
    want="$(cat "$@" requirements.txt | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "ctop: installing requirements into .venv (requirements.txt $*)"
        local args=(-r requirements.txt)
        for f in "$@"; do args+=(-r "$f"); done
        if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"; then
            echo "ctop: installing the requirements failed (see pip's message above)" >&2
            exit 2
        fi
        echo "$want" > "$stamp"
    fi
}

# One clear line if PostgreSQL or Redis is not reachable, instead of a traceback later.
check_services() {
    "$VENV/bin/python" - <<'PY' || exit 2
import os, sys
import environ, psycopg, redis
sys.path.insert(0, os.getcwd())
from common.text import redact_url  # passwords in DATABASE_URL and REDIS_URL are never printed
env = environ.Env()
if os.path.isfile(".env"):
    env.read_env(".env", overwrite=False)
db = env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/ctop")
try:
    psycopg.connect(host=db["HOST"] or None, port=db["PORT"] or None, user=db["USER"] or None,
                    password=db["PASSWORD"] or None, dbname="postgres", connect_timeout=3).close()
except Exception as exc:
    print(f"ctop: PostgreSQL is not reachable at {db['HOST']}:{db['PORT'] or 5432} ({str(exc).strip().splitlines()[0]}); "
          "start it or set DATABASE_URL", file=sys.stderr)
    sys.exit(1)
url = os.environ.get("TEST_REDIS_URL") if os.environ.get("CTOP_CHECK_TEST_REDIS") else None
url = url or env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
try:
    redis.Redis.from_url(url, socket_connect_timeout=3).ping()
except Exception as exc:
    print(f"ctop: Redis is not reachable at {redact_url(url)} ({exc}); start it or set REDIS_URL", file=sys.stderr)
    sys.exit(1)
PY
}

# Debian packages a test area needs: installed when one of `commands` is missing and we may (root,
# apt); otherwise the tests that need them are skipped, and this says how to install them.
# apt_ensure "<the tests>" "<commands>" <apt-get install arguments...>; status 0: installed now.
apt_ensure() {
    local what=$1 commands=$2 c names
    shift 2
    names=$(printf '%s ' "$@" | sed -e 's/--[a-z-]* //g' -e 's/ $//')  # the packages, not the options
    for c in $commands; do
        command -v "$c" >/dev/null 2>&1 || break
        c=""
    done
    [ -z "$c" ] && return 1  # every command is there
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "ctop: $c is not installed: $what will be skipped (sudo apt-get install $names)" >&2
        return 1
    fi
    echo "ctop: installing $names (Debian packages) for $what"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "$@" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null 2>&1; } \
        || { echo "ctop: could not install $names ($what will be skipped)" >&2; return 1; }
}

# The browser tests drive Debian's Chromium.
ensure_chromium() {
    apt_ensure "the browser tests" "chromium chromedriver" chromium chromium-driver || true
}

# The monitoring tests check deploy/prometheus with promtool and start the prometheus binary
# themselves, on a free loopback port.
ensure_prometheus() {
    if apt_ensure "the Prometheus tests" "promtool prometheus" --no-install-recommends prometheus; then
        # The package's own server, which Debian enables and starts where systemd runs, is not
        # wanted (a container's policy-rc.d never starts it). Only when installed here: a server
        # the machine already had is left alone.
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now prometheus >/dev/null 2>&1 || true
        fi
    fi
}
