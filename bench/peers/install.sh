#!/usr/bin/env bash
# One virtualenv per peer under .venv-peers/NAME, from bench/peers/requirements/NAME.txt (pinned).
# A peer that fails to install leaves .venv-peers/NAME.failed with pip's last lines, so the
# table reports it instead of dropping it.
set -u
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
ROOT=.venv-peers
mkdir -p "$ROOT"
pids=()
for req in bench/peers/requirements/*.txt; do
    name=$(basename "$req" .txt)
    venv="$ROOT/$name"
    if [ -f "$venv/.installed" ] && [ "$venv/.installed" -nt "$req" ]; then
        continue
    fi
    (
        rm -f "$ROOT/$name.failed"
        log="$ROOT/$name.log"
        if "$PYTHON" -m venv "$venv" >"$log" 2>&1 &&
            "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req" >>"$log" 2>&1; then
            "$venv/bin/python" -m pip freeze >"$venv/.installed"
            echo "bench-peers: installed $name"
        else
            tail -n 20 "$log" >"$ROOT/$name.failed"
            echo "bench-peers: $name did not install (see $ROOT/$name.failed)"
        fi
    ) &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
exit 0
