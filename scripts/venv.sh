#!/usr/bin/env bash
# Creates the project's virtual environment (default .venv) with the first Python >= 3.11 on PATH, so that neither
# `make up` nor `make test` installs into the system's Python (Debian's refuses: PEP 668, externally-managed-environment).
# On Debian, `python3 -m venv` needs the python3-venv package: installed here when missing and we are root.
set -euo pipefail
venv=${1:-.venv}
[ -x "$venv/bin/python" ] && exit 0
python=""
for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    python=$candidate
    break
  fi
done
if [ -z "$python" ]; then
  echo "meshdcm needs Python >= 3.11: none found on PATH (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian's python3-venv (needed to create $venv)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  else
    echo "$python cannot create a virtual environment: install python3-venv (apt-get install python3-venv)" >&2
    exit 1
  fi
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
echo "created $venv with $("$venv/bin/python" --version)"
