#!/usr/bin/env python3
"""Turn an image variant (images/*.toml) into a `podman build` or `docker build` command.

A variant names the image and says what goes into it; the root Containerfile does the rest
through build arguments, so the command printed here is all a build needs:

    name      image name, e.g. "quay.io/example/pulp" (required)
    tag       image tag (required)
    pulpcore  pip requirement for pulpcore, e.g. "pulpcore==3.123.1" (required)
    plugins   list of pip requirements for plugins (required, may be empty)
    base      the Pulp image's base image (optional: the Containerfile's default)
    builder   the image the binary is compiled in (optional: the Containerfile's default)
    packages  list of system packages (optional: the Containerfile's default)

A variant may instead be built on another one's image:

    on             the other variant, e.g. "minimal" (images/minimal.toml), built first
    containerfile  the Containerfile that adds to it, relative to the repository, taking the
                   other image as the build argument PULP_IMAGE (pulpcore, plugins, base,
                   builder and packages are then the other variant's)

    images/build.py images/minimal.toml                 print the podman command
    images/build.py images/minimal.toml --engine docker print the docker command
    images/build.py images/minimal.toml --run           run it
    images/build.py VARIANT --run -- --no-cache         arguments after -- go to the engine

--image, --base and --builder override the variant's values (the tests build on local bases);
with `on`, --base and --builder go to the other variant, whose image is then named after
--image with "-" and its variant name appended to the name ("x:1" -> "x-minimal:1").
Docker builds with BuildKit (the Containerfile's RUN --mount needs it): the command is
prefixed with DOCKER_BUILDKIT=1, which Docker 20.10 (Debian 12's docker.io) needs and newer
docker CLIs with the buildx plugin accept.
Needs Python 3.11 (tomllib).
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    sys.exit("images/build.py needs Python 3.11 or newer (tomllib)")

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"name": str, "tag": str, "pulpcore": str, "plugins": list}
OPTIONAL = {"base": str, "builder": str, "packages": list}
LAYERED = {"name": str, "tag": str, "on": str, "containerfile": str}


class VariantError(Exception):
    pass


def load_variant(path: Path) -> dict:
    try:
        with path.open("rb") as file:
            variant = tomllib.load(file)
    except FileNotFoundError:
        raise VariantError(f"{path}: no such variant file (see images/*.toml)")
    except tomllib.TOMLDecodeError as error:
        raise VariantError(f"{path}: not valid TOML: {error}")
    known = LAYERED if "on" in variant else REQUIRED | OPTIONAL
    required = LAYERED if "on" in variant else REQUIRED
    for key in variant:
        if key not in known:
            raise VariantError(f"{path}: unknown key '{key}'; known keys: {', '.join(known)}")
    for key, kind in known.items():
        if key not in variant:
            if key in required:
                raise VariantError(f"{path}: '{key}' is missing")
            continue
        value = variant[key]
        if not isinstance(value, kind) or (
            kind is list and not all(isinstance(item, str) and item for item in value)
        ):
            what = "a list of strings" if kind is list else "a string"
            raise VariantError(f"{path}: '{key}' must be {what}")
        if kind is str and not value.strip():
            raise VariantError(f"{path}: '{key}' is empty")
    if "on" in variant and not (ROOT / variant["containerfile"]).is_file():
        raise VariantError(f"{path}: containerfile {variant['containerfile']} does not exist")
    return variant


def variant_path(name: Path) -> Path:
    if not name.suffix and not name.exists():
        return ROOT / "images" / f"{name}.toml"
    return name


def layered_image(image: str, on: str) -> str:
    """ "x:1" -> "x-minimal:1": the name of the image a layered variant is built on."""
    name, colon, tag = image.rpartition(":")
    if not colon or "/" in tag:
        name, tag = image, "latest"
    return f"{name}-{on}:{tag}"


def build_commands(variant: dict, engine: str, image: str | None, base: str | None,
                   builder: str | None, extra: list[str]) -> list[list[str]]:
    """The build commands in order: the other variant's first when there is `on`."""
    if "on" not in variant:
        return [build_command(variant, engine, image, base, builder, extra)]
    other = load_variant(variant_path(Path(variant["on"])))
    if "on" in other:
        raise VariantError(f"variant '{variant['on']}' is itself built on another: one level only")
    target = image or f"{variant['name']}:{variant['tag']}"
    under = layered_image(target, variant["on"]) if image else None
    first = build_command(other, engine, under, base, builder, extra)
    under = first[first.index("--tag") + 1]
    command = [engine, "build", "--file", str(ROOT / variant["containerfile"]),
               "--tag", target, "--build-arg", f"PULP_IMAGE={under}"]
    return [first, command + extra + [str(ROOT)]]


def build_command(variant: dict, engine: str, image: str | None, base: str | None,
                  builder: str | None, extra: list[str]) -> list[str]:
    args = {
        "PULPCORE": variant["pulpcore"],
        "PLUGINS": " ".join(variant["plugins"]),
    }
    if base or "base" in variant:
        args["BASE_IMAGE"] = base or variant["base"]
    if builder or "builder" in variant:
        args["BUILDER_IMAGE"] = builder or variant["builder"]
    if "packages" in variant:
        args["PACKAGES"] = " ".join(variant["packages"])
    command = [engine, "build", "--file", str(ROOT / "Containerfile")]
    command += ["--tag", image or f"{variant['name']}:{variant['tag']}"]
    for key, value in args.items():
        command += ["--build-arg", f"{key}={value}"]
    return command + extra + [str(ROOT)]


def main(argv: list[str]) -> int:
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    parser = argparse.ArgumentParser(
        description="Print (or run) the podman/docker build command for an image variant.")
    parser.add_argument("variant", type=Path, help="images/NAME.toml, or just NAME")
    parser.add_argument("--engine", choices=["podman", "docker"], default="podman")
    parser.add_argument("--run", action="store_true", help="run the command instead of printing it")
    parser.add_argument("--image", help="NAME:TAG to build instead of the variant's name and tag")
    parser.add_argument("--base", help="base image instead of the variant's")
    parser.add_argument("--builder", help="builder image instead of the variant's")
    options = parser.parse_args(argv)

    path = variant_path(options.variant)
    try:
        variant = load_variant(path)
        commands = build_commands(variant, options.engine, options.image, options.base,
                                  options.builder, extra)
    except VariantError as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 78
    env = {"DOCKER_BUILDKIT": "1"} if options.engine == "docker" else {}
    prefix = [f"{key}={value}" for key, value in env.items()]
    shown = [" ".join(prefix + [shlex.join(command)]) for command in commands]
    if not options.run:
        print(" && ".join(shown))
        return 0
    for command, line in zip(commands, shown):
        print(f"build.py: {line}", file=sys.stderr)
        try:
            code = subprocess.run(command, env=os.environ | env).returncode
        except FileNotFoundError:
            print(f"build.py: {command[0]} is not installed", file=sys.stderr)
            return 127
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
