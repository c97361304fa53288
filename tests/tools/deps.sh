# Source this file (bash): installs what the tests and the demo need, once, and exports
#   PULP_VENV  a virtualenv with the real pulpcore from PyPI (cached by requirements.txt)
#   PATH       with PostgreSQL's server programs (initdb, pg_ctl)
# Safe to source again: every step is skipped when its result is already there.

_pe_tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

_pe_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

_pe_missing=()
_pe_pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if ! command -v initdb >/dev/null && [ -z "$_pe_pg_bin" ]; then _pe_missing+=(postgresql); fi
command -v curl >/dev/null || _pe_missing+=(curl)
command -v psql >/dev/null || _pe_missing+=(postgresql-client)
command -v unshare >/dev/null && command -v nsenter >/dev/null || _pe_missing+=(util-linux)
# tests/probe.rs brings up the loopback of its own network namespace.
command -v ip >/dev/null || _pe_missing+=(iproute2)
command -v python3 >/dev/null || _pe_missing+=(python3 python3-venv)
# tests/migrate.rs makes a signing key for add-signing-service (gpg and gpg-agent).
command -v gpg >/dev/null && command -v gpg-agent >/dev/null && command -v gpgconf >/dev/null || _pe_missing+=(gnupg)
# The image tests (tests/image.rs): podman with runc (crun cannot start containers on the
# project's machines), debootstrap for base images, since no image registry can be reached.
command -v podman >/dev/null || _pe_missing+=(podman)
command -v runc >/dev/null || _pe_missing+=(runc)
command -v debootstrap >/dev/null || _pe_missing+=(debootstrap)
python3 -c 'import ensurepip' 2>/dev/null || _pe_missing+=(python3-venv)
if [ "${#_pe_missing[@]}" -gt 0 ]; then
    echo "deps: installing ${_pe_missing[*]} with apt-get" >&2
    _pe_root apt-get update -qq >&2
    _pe_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${_pe_missing[@]}" >&2
    _pe_pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
if ! command -v initdb >/dev/null && [ -n "$_pe_pg_bin" ]; then export PATH="$_pe_pg_bin:$PATH"; fi

_pe_key=$( (cat "$_pe_tools/requirements.txt"; python3 --version) | sha256sum | cut -c1-16)
export PULP_VENV="${PULP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pulp-entrypoint/venv-$_pe_key}"
# A marker written last tells a finished venv from one an interrupted install left behind.
if [ ! -f "$PULP_VENV/.complete" ]; then
    echo "deps: creating $PULP_VENV with pulpcore from PyPI (about a minute)" >&2
    rm -rf "$PULP_VENV"
    mkdir -p "$(dirname "$PULP_VENV")"
    python3 -m venv "$PULP_VENV"
    "$PULP_VENV/bin/pip" install -q --disable-pip-version-check -r "$_pe_tools/requirements.txt" >&2
    touch "$PULP_VENV/.complete"
fi
unset _pe_tools _pe_missing _pe_pg_bin _pe_key
