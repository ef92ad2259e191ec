#!/usr/bin/env bash
# Installs what is missing for cloudsign on a Debian 12 machine (as root):
# Debian packages, the Python virtualenv (pinned by constraints.txt) and the
# npm packages (pinned by package-lock.json). Idempotent and quick when
# nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    # A tool already on PATH (another Python, another Node) counts as present.
    case "$pkg" in
        python3|python3-venv|python3-dev) command -v python3 >/dev/null && python3 -m venv --help >/dev/null 2>&1 && continue ;;
        nodejs) command -v node >/dev/null && continue ;;
        npm) command -v npm >/dev/null && continue ;;
    esac
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done < scripts/apt-packages.txt
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
    echo "setup: creating .venv"
    "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
    echo "setup: installing Python dependencies"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
    # face_recognition declares a dependency on dlib, which would compile from
    # source; dlib-bin (a prebuilt wheel, in our dependencies) provides it.
    .venv/bin/pip install -q --no-deps -c constraints.txt face-recognition
    rm -f .venv/.installed-*
    touch "$stamp"
fi

lock_stamp="node_modules/.installed-$(sha256sum package-lock.json | cut -c1-16)"
if [[ ! -f "$lock_stamp" ]]; then
    echo "setup: installing npm packages"
    npm ci --no-audit --no-fund --loglevel=error
    touch "$lock_stamp"
fi
