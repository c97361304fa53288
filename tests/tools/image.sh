#!/usr/bin/env bash
# Builds the project's image with podman or Docker Engine on a machine that can reach no image
# registry (tests/image.rs runs it; people can too). Nothing is pulled: the base images are made
# here with debootstrap and `podman import` / `docker import`, then the root Containerfile is
# built on them through images/build.py.
#
#   tests/tools/image.sh [--engine podman|docker] bases                 make the local base
#                                                                       images, print their names
#   tests/tools/image.sh [--engine podman|docker] build VARIANT IMAGE   build images/VARIANT.toml
#                                                                       as IMAGE on them
#   tests/tools/image.sh [--engine podman|docker] standin NAME IMAGE    build the compose test's
#                                                                       stand-in NAME (postgres,
#                                                                       redis, pulp-web: see
#                                                                       tests/tools/compose/) as
#                                                                       IMAGE on the runtime base
# The engine is podman unless --engine or ENGINE=docker says otherwise.
#
# What stands in for the network the Containerfile's public defaults assume:
# - the Pulp stage's base carries the host's CA bundle (/usr/local/share/ca-certificates/, as a
#   site's own base image carries its CA) and pip is pointed at it (PIP_OPTIONS): the machines
#   reach PyPI through a proxy whose CA the public list lacks;
# - the builder stage gets the host's Rust toolchain and cargo registry: podman mounts them
#   (`podman build -v`); `docker build` has no mounts, so under docker they are copied into the
#   imported builder base (the toolchain without its docs, about 600 MB, once per toolchain and
#   Cargo.lock).
# Docker builds with BuildKit (build.py sets DOCKER_BUILDKIT=1): the Containerfile's RUN --mount
# needs it, and docker 20.10's built-in Dockerfile frontend accepts it without a `# syntax=`
# line (which would be a pull). A docker CLI of 23 or later needs the buildx plugin for
# BuildKit; without it the engine's own CLI (Debian's docker.io, /usr/bin/docker) builds.
#
# Caches, so that a second run takes seconds:
#   ~/.cache/pulp-entrypoint/rootfs-NAME-KEY.tar   debootstrap's result, KEY = hash of suite,
#                                                  mirror and package list (shared by engines)
#   localhost/pulp-entrypoint-base/NAME:KEY        the imported base image (each engine's store)
#   the engine's layer cache                       apt and pip steps of the Containerfile
#   the cache mount of the builder stage           cargo's target directory
# podman runs with tests/tools/containers.conf (CONTAINERS_CONF); /etc is not touched.
set -euo pipefail

tools="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$tools/../.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$tools/containers.conf}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/pulp-entrypoint"

engine=${ENGINE:-podman}
if [ "${1:-}" = --engine ]; then
    engine=${2:-}
    shift 2 || true
fi

suite=bookworm
mirror=http://deb.debian.org/debian
# What the public defaults of the Containerfile give: debian:bookworm-slim for the Pulp image
# (its packages come from the Containerfile's PACKAGES), rust:1-bookworm for the builder
# (here: a C toolchain and the host's rustup).
runtime_packages=""
builder_packages="gcc,libc6-dev"
host_ca=/etc/ssl/certs/ca-certificates.crt
# Where the runtime base holds the host's bundle: update-ca-certificates (run when the
# Containerfile installs ca-certificates) adds it to the image's list, and pip reads it.
base_ca=/usr/local/share/ca-certificates/host-ca-certificates.crt

log() { printf 'image.sh: %s\n' "$*" >&2; }

# The docker CLI for builds: one that speaks BuildKit (see the top of this file).
docker_build_cli() {
    if docker buildx version >/dev/null 2>&1; then
        echo docker
        return
    fi
    local cli version
    for cli in docker /usr/bin/docker; do
        version=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null) || continue
        if [ "${version%%.*}" -lt 23 ] 2>/dev/null; then
            echo "$cli"
            return
        fi
    done
    log "no docker CLI here builds with BuildKit: install the buildx plugin (docker-buildx) or Debian's docker.io"
    return 1
}

need() {
    local missing=() tools=(debootstrap python3)
    case "$engine" in
    podman) tools+=(podman) ;;
    docker) tools+=(docker rustup) ;;
    *) log "unknown engine '$engine': podman or docker"; exit 64 ;;
    esac
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "missing ${missing[*]}: run tests/run.sh (it installs them through tests/tools/deps.sh)"
        exit 1
    fi
    if [ "$engine" = docker ] && ! docker info >/dev/null 2>&1; then
        log "docker cannot reach the Docker Engine daemon: $(docker info 2>&1 | tail -n 1)"
        exit 1
    fi
}

image_exists() {
    case "$engine" in
    podman) podman image exists "$1" ;;
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    esac
}

# rootfs NAME PACKAGES: the cached debootstrap tarball for PACKAGES, made unless it is there;
# prints its path.
rootfs() {
    local name=$1 packages=$2 key tarball dir
    key=$(printf '%s\n' "$suite" "$mirror" "$packages" | sha256sum | cut -c1-12)
    tarball="$cache/rootfs-$name-$key.tar"
    if [ ! -f "$tarball" ]; then
        log "debootstrap $suite ($name${packages:+: $packages}) into $tarball (about a minute)"
        mkdir -p "$cache"
        dir=$(mktemp -d "$cache/rootfs-$name.XXXXXX")
        # A failed debootstrap leaves a half-made tree behind: never cache that.
        if ! debootstrap --variant=minbase ${packages:+--include="$packages"} \
            "$suite" "$dir" "$mirror" > "$dir.log" 2>&1; then
            tail -n 20 "$dir.log" >&2
            rm -rf "$dir" "$dir.log"
            log "debootstrap failed"
            exit 1
        fi
        # As debian:*-slim: no package lists or caches in the image.
        rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin \
            "$dir"/var/cache/apt/archives/*.deb
        tar -C "$dir" --numeric-owner -cf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$dir" "$dir.log"
    fi
    echo "$tarball"
}

# import TARBALL IMAGE ENV...: the engine's `import`, with ENV and bash as CMD.
import() {
    local tarball=$1 image=$2
    shift 2
    local changes=()
    for env in "$@"; do changes+=(--change "ENV $env"); done
    log "importing $tarball as $image ($engine)"
    "$engine" import "${changes[@]}" --change 'CMD ["/bin/bash"]' "$tarball" "$image" >/dev/null
}

# The Pulp stage's base: debootstrap's tree and the host's CA bundle (see the top).
runtime_base() {
    local tarball key image work
    tarball=$(rootfs runtime "$runtime_packages")
    key=$( (echo "$tarball"; cat "$host_ca") | sha256sum | cut -c1-12)
    image="localhost/pulp-entrypoint-base/runtime:$key"
    if ! image_exists "$image"; then
        work=$(mktemp -d)
        # Appended to a copy: `import` takes one archive, and the cached one stays as it is.
        mkdir -p "$work/tree/${base_ca%/*}"
        install -m 0644 "$host_ca" "$work/tree/$base_ca"
        cp "$tarball" "$work/rootfs.tar"
        # Only paths the tree lacks: docker refuses an archive that names one path twice.
        local add=".${base_ca%/*}"
        if tar -tf "$tarball" | grep -qxF "$add/"; then add=".$base_ca"; fi
        tar -C "$work/tree" --numeric-owner --owner=0 --group=0 -rf "$work/rootfs.tar" "$add"
        import "$work/rootfs.tar" "$image"
        rm -rf "$work"
    fi
    echo "$image"
}

builder_env=(
    RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
)

# Like rust:1-bookworm: rustup and cargo under /usr/local, on PATH. Under podman the toolchain
# itself is the host's, mounted at build time (local_build_args); under docker it is copied in:
# the host's active toolchain (no docs), rustup as cargo and rustc, and the cargo registry (the
# build is --locked and offline: the builder has no CA list to reach crates.io with).
builder_base() {
    local tarball key image
    tarball=$(rootfs builder "$builder_packages")
    if [ "$engine" = podman ]; then
        key=$(printf '%s\n' "$tarball" "${builder_env[@]}" | sha256sum | cut -c1-12)
        image="localhost/pulp-entrypoint-base/builder:$key"
        image_exists "$image" || import "$tarball" "$image" "${builder_env[@]}"
        echo "$image"
        return
    fi
    local rustup_home=${RUSTUP_HOME:-$HOME/.rustup} cargo_home=${CARGO_HOME:-$HOME/.cargo}
    local toolchain rustup work
    toolchain=$(cd "$root" && rustup show active-toolchain | cut -d' ' -f1)
    rustup=$(command -v rustup)
    key=$( (echo "$tarball" "$toolchain"; printf '%s\n' "${builder_env[@]}"
        cd "$root" && rustc -vV && cargo -V && cat Cargo.lock) | sha256sum | cut -c1-12)
    image="localhost/pulp-entrypoint-base/builder-rust:$key"
    if ! image_exists "$image"; then
        work=$(mktemp -d "$cache/builder-rust.XXXXXX")
        mkdir -p "$work/tree/usr/local/rustup/toolchains" "$work/tree/usr/local/cargo/bin"
        printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\nauto_self_update = "disable"\n' \
            "$toolchain" > "$work/tree/usr/local/rustup/settings.toml"
        # -L: the toolchain may be a link (rustup names versions as links to "stable").
        mkdir "$work/tree/usr/local/rustup/toolchains/$toolchain"
        for part in "$rustup_home/toolchains/$toolchain"/*; do
            [ "${part##*/}" = share ] && continue # documentation, 800 MB
            cp -aL "$part" "$work/tree/usr/local/rustup/toolchains/$toolchain/"
        done
        cp -L "$rustup" "$work/tree/usr/local/cargo/bin/rustup"
        ln -s rustup "$work/tree/usr/local/cargo/bin/cargo"
        ln -s rustup "$work/tree/usr/local/cargo/bin/rustc"
        mkdir -p "$work/tree/usr/local/cargo/registry"
        cp -a "$cargo_home/registry/index" "$cargo_home/registry/cache" \
            "$work/tree/usr/local/cargo/registry/"
        cp "$tarball" "$work/rootfs.tar"
        tar -C "$work/tree" --numeric-owner --owner=0 --group=0 -rf "$work/rootfs.tar" \
            ./usr/local/rustup ./usr/local/cargo
        import "$work/rootfs.tar" "$image" "${builder_env[@]}"
        rm -rf "$work"
    fi
    echo "$image"
}

# Arguments that stand in for the network the public defaults assume (see the top).
local_build_args() {
    if [ "$engine" = podman ]; then
        local rustup=${RUSTUP_HOME:-$HOME/.rustup} cargo_home=${CARGO_HOME:-$HOME/.cargo}
        # --jobs 2: the builder stage (cargo, CPU) and the Pulp stage (apt, pip: network)
        # overlap; BuildKit does that by itself.
        printf '%s\n' --jobs 2 \
            -v "$rustup:/usr/local/rustup:ro" \
            -v "$cargo_home:/usr/local/cargo"
    else
        printf '%s\n' --progress=plain
    fi
    printf '%s\n' --build-arg "PIP_OPTIONS=--cert=$base_ca"
}

# Both base images at once (debootstrap mostly waits on the network); their names on stdout.
bases() {
    local names
    names=$(mktemp -d)
    runtime_base > "$names/runtime" & local runtime=$!
    builder_base > "$names/builder" & local builder=$!
    local failed=0
    wait "$runtime" || failed=1
    wait "$builder" || failed=1
    cat "$names/runtime" "$names/builder"
    rm -rf "$names"
    return "$failed"
}

need
case "${1:-}" in
bases)
    bases
    ;;
build)
    [ $# -eq 3 ] || { log "usage: $0 [--engine podman|docker] build VARIANT IMAGE"; exit 64; }
    variant=$2 image=$3
    { read -r base_image; read -r builder_image; } < <(bases)
    [ -n "${builder_image:-}" ] || { log "could not make the base images"; exit 1; }
    mapfile -t extra < <(local_build_args)
    log "building $image from images/$variant.toml ($engine)"
    if [ "$engine" = docker ]; then
        cli=$(docker_build_cli)
        # build.py runs `docker build`: the BuildKit-capable CLI first on its PATH.
        bin=$(mktemp -d)
        trap 'rm -rf "$bin"' EXIT
        [ "$cli" = docker ] || ln -s "$cli" "$bin/docker"
        PATH="$bin:$PATH" python3 "$root/images/build.py" \
            "$root/images/$variant.toml" --engine docker --run \
            --image "$image" --base "$base_image" --builder "$builder_image" -- "${extra[@]}"
    else
        python3 "$root/images/build.py" "$root/images/$variant.toml" --engine podman --run \
            --image "$image" --base "$base_image" --builder "$builder_image" -- "${extra[@]}"
    fi
    ;;
standin)
    [ $# -eq 3 ] || { log "usage: $0 [--engine podman|docker] standin NAME IMAGE"; exit 64; }
    context="$root/tests/tools/compose/standins/$2" image=$3
    [ -f "$context/Containerfile" ] || { log "no stand-in named '$2' in ${context%/*}"; exit 64; }
    base_image=$(runtime_base)
    log "building the stand-in $2 as $image ($engine)"
    # Plain Containerfiles (no RUN --mount): the engine's own build, layer cache and all.
    "$engine" build --quiet --tag "$image" --file "$context/Containerfile" \
        --build-arg "BASE=$base_image" "$context" >/dev/null
    ;;
*)
    log "usage: $0 [--engine podman|docker] bases | build VARIANT IMAGE | standin NAME IMAGE"
    exit 64
    ;;
esac
