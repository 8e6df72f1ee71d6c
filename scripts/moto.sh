#!/usr/bin/env bash
# A local AWS for the tests and the demo: moto server (S3, SQS, SNS, STS, IAM, DynamoDB on one
# port), installed in a venv of the project's own (see ../shared/reference/local-aws.md).
#
#   scripts/moto.sh install        create the venv and install moto[server]==$MOTO_VERSION
#                                  (idempotent); prints the path of moto_server
#   scripts/moto.sh start [PORT]   run moto_server in the foreground on 127.0.0.1:PORT (5000)
#
# Env: CTC_MOTO_VENV (target/moto-venv). The tests find moto_server in the default venv, or
# through CTC_MOTO_SERVER.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CTC_MOTO_VENV:-$REPO/target/moto-venv}
MOTO_VERSION=5.2.5

installed_version() {
  [[ -x $VENV/bin/python ]] || return 0
  "$VENV/bin/python" - <<'PY' 2>/dev/null || true
from importlib.metadata import version
print(version("moto"))
PY
}

install() {
  if [[ $(installed_version) != "$MOTO_VERSION" || ! -x $VENV/bin/moto_server ]]; then
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV"
    local log
    log=$(mktemp)
    # Quiet on success; the whole pip output on failure.
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
      "moto[server]==$MOTO_VERSION" >"$log" 2>&1; then
      cat "$log" >&2
      rm -f "$log"
      echo "moto.sh: pip install of moto[server]==$MOTO_VERSION into $VENV failed" >&2
      exit 1
    fi
    rm -f "$log"
  fi
  echo "$VENV/bin/moto_server"
}

start() {
  local port=${1:-5000}
  if [[ ! -x $VENV/bin/moto_server ]]; then
    echo "moto.sh: no moto_server in $VENV: run scripts/moto.sh install" >&2
    exit 1
  fi
  # A fixed account, so that assuming a role does not switch moto to another account.
  export MOTO_ACCOUNT_ID=123456789012
  exec "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
}

case ${1:-} in
  install) install ;;
  start) start "${2:-}" ;;
  *)
    echo "usage: scripts/moto.sh install | start [PORT]" >&2
    exit 2
    ;;
esac
