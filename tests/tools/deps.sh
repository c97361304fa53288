# Source this file (bash): installs what the tests and the demo need, once, and exports
#   PULP_VENV       a virtualenv with the real pulpcore from PyPI (cached by requirements.txt)
#   PULP_VENV_3_49  one with an older pulpcore, for the version matrix (tests/matrix.rs), from
#   PULP_VENV_3_85  requirements-3.49.txt and requirements-3.85.txt; a new old release gets a
#                   requirements-X.Y.txt, a line below and a test in tests/matrix.rs
#   VENV_PODMAN_COMPOSE  a virtualenv with podman-compose from PyPI (requirements-compose.txt),
#                   for tests/image/compose.rs (docker-compose is Debian's package)
#   PATH            with PostgreSQL's server programs (initdb, pg_ctl)
# Each venv is cached under ~/.cache/pulp-entrypoint/, keyed by its requirements file and the
# Python version; a variable that is already set names a venv to use (created when missing).
# Missing venvs are installed at the same time (about a minute, quiet; pip's output is shown
# only when an install fails, and then this script fails).
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
# tests/image/kube.rs: `podman kube play` builds its pod infra (pause) image locally from
# catatonit when no infra image is configured (none can be pulled here).
command -v catatonit >/dev/null || [ -x /usr/libexec/podman/catatonit ] || _pe_missing+=(catatonit)
# And under Docker Engine: the project's machines come with it (Debian's docker.io, the daemon
# running); where docker is missing, Debian's package. Its daemon is not started here: the
# docker tests fail and say so when the CLI cannot reach one.
command -v docker >/dev/null || _pe_missing+=(docker.io)
# tests/image/compose.rs runs pulp-oci-images' compose file with docker-compose (Debian's 1.29,
# on the project's machines) and podman-compose (a venv below).
command -v docker-compose >/dev/null || _pe_missing+=(docker-compose)
python3 -c 'import ensurepip' 2>/dev/null || _pe_missing+=(python3-venv)
# tests/faults/pgbouncer.rs runs a real PgBouncer (Debian's, in /usr/sbin) in front of PostgreSQL.
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || _pe_missing+=(pgbouncer)
if [ "${#_pe_missing[@]}" -gt 0 ]; then
    echo "deps: installing ${_pe_missing[*]} with apt-get" >&2
    _pe_root apt-get update -qq >&2
    _pe_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${_pe_missing[@]}" >&2
    _pe_pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
if ! command -v initdb >/dev/null && [ -n "$_pe_pg_bin" ]; then export PATH="$_pe_pg_bin:$PATH"; fi

# _pe_venv VAR REQUIREMENTS PREFIX: export VAR (unless set) as the cached venv for REQUIREMENTS
# and start installing it in the background when it is not complete.
_pe_jobs=()
# No job-control notices ("[1] 4242") when an interactive shell sources this.
_pe_monitor=$(set +o | grep -w monitor)
set +m
_pe_venv() {
    local var=$1 requirements=$2 prefix=$3 key dir
    key=$( (cat "$requirements"; python3 --version) | sha256sum | cut -c1-16)
    dir="${!var:-${XDG_CACHE_HOME:-$HOME/.cache}/pulp-entrypoint/$prefix$key}"
    export "$var=$dir"
    # A marker written last tells a finished venv from one an interrupted install left behind.
    [ -f "$dir/.complete" ] && return 0
    echo "deps: creating $dir with $(grep -m 1 -v '^#' "$requirements") from PyPI (about a minute)" >&2
    rm -rf "$dir" "$dir.log"
    mkdir -p "$(dirname "$dir")"
    {
        python3 -m venv "$dir" &&
            "$dir/bin/pip" install -q --disable-pip-version-check -r "$requirements" &&
            touch "$dir/.complete"
    } >"$dir.log" 2>&1 &
    _pe_jobs+=("$!:$dir")
}
_pe_venv PULP_VENV "$_pe_tools/requirements.txt" venv-
_pe_venv PULP_VENV_3_49 "$_pe_tools/requirements-3.49.txt" venv-3.49-
_pe_venv PULP_VENV_3_85 "$_pe_tools/requirements-3.85.txt" venv-3.85-
_pe_venv VENV_PODMAN_COMPOSE "$_pe_tools/requirements-compose.txt" venv-compose-
eval "$_pe_monitor"
_pe_failed=0
for _pe_job in "${_pe_jobs[@]}"; do
    if wait "${_pe_job%%:*}"; then
        rm -f "${_pe_job#*:}.log"
    else
        echo "deps: installing ${_pe_job#*:} failed:" >&2
        cat "${_pe_job#*:}.log" >&2
        _pe_failed=1
    fi
done
_pe_status=$_pe_failed
unset _pe_tools _pe_missing _pe_pg_bin _pe_jobs _pe_job _pe_failed _pe_monitor
unset -f _pe_venv
# Sourced: return (so that `set -e` callers stop); run as a script: exit.
if [ "$_pe_status" != 0 ]; then unset _pe_status; return 1 2>/dev/null || exit 1; fi
unset _pe_status
