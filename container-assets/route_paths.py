#!/usr/local/lib/pulp/bin/python3
"""route_paths.py NAME: the paths Pulp's plugins serve, as JSON, for pulp-operator.

The operator runs `/usr/bin/route_paths.py <pulp name>` in a content pod and turns the JSON
list it prints into Ingress or Route paths (controllers/repo_manager/ingress.go,
controllers/ocp/route.go). The contract of the upstream images' script, kept here:

- every installed module whose name matches `pulp_.*` or `galaxy_ng` and ships
  `app/webserver_snippets/nginx.conf` is read;
- each top-level `location PATH { ... }` of it gives
  `{"name": "<NAME>-<app><path with / and _ as ->", "path": PATH, "targetPort":
  "api-24817" | "content-24816", "serviceName": "<NAME>-api-svc" | "<NAME>-content-svc"}`,
  chosen by the first `proxy_pass` naming `pulp-api` or `pulp-content`; a `rewrite` before
  it adds `"rewrite": <its replacement>` and a second entry for the path without its
  trailing slash (name suffix `2`), listed first;
- a location without such a `proxy_pass` is an error (exit 1).

Written for this image without the `python-nginx` package: the snippets are parsed here
(directives, blocks, quotes and comments of nginx's syntax).
"""

import json
import pkgutil
import re
import sys
from pathlib import Path


def tokens(text):
    """nginx configuration tokens: words (quotes removed), `{`, `}` and `;`."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            yield c
            i += 1
        elif c in "\"'":
            j = i + 1
            word = []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                word.append(text[j])
                j += 1
            if j >= n:
                raise ValueError("unterminated quote")
            yield "".join(word)
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                j += 1
            yield text[i:j]
            i = j


def parse(text):
    """A list of (name, args, children) where children is None for a simple directive."""
    stack = [[]]
    words = []
    for token in tokens(text):
        if token == ";":
            if words:
                stack[-1].append((words[0], words[1:], None))
            words = []
        elif token == "{":
            if not words:
                raise ValueError("block without a name")
            block = (words[0], words[1:], [])
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            if len(stack) == 1 or words:
                raise ValueError("unbalanced '}'")
            stack.pop()
        else:
            words.append(token)
    if len(stack) != 1 or words:
        raise ValueError("unexpected end of file")
    return stack[0]


def snippets():
    """(app, path of nginx.conf) of every installed Pulp plugin that has one."""
    found = []
    for module in pkgutil.iter_modules():
        if not re.search(r"pulp_.*|galaxy_ng", module.name):
            continue
        path = getattr(module.module_finder, "path", None)
        if path is None:
            continue
        conf = Path(path) / module.name / "app" / "webserver_snippets" / "nginx.conf"
        if conf.is_file():
            app = "galaxy" if "galaxy" in module.name else module.name.split("pulp_", 1)[-1]
            found.append((app, conf))
    return found


def routes(name):
    router = []
    for app, conf in snippets():
        try:
            directives = parse(conf.read_text())
        except (OSError, ValueError) as error:
            raise SystemExit(f"route_paths.py: {conf}: {error}")
        for directive, args, children in directives:
            if directive != "location" or children is None:
                continue
            path = " ".join(args)
            if not path.startswith("/"):
                path = f"/{path}"
            rewrite = ""
            target_port = service = ""
            for key, values, _ in children:
                value = " ".join(values)
                if key == "proxy_pass" and "pulp-api" in value:
                    target_port, service = "api-24817", f"{name}-api-svc"
                    break
                if key == "proxy_pass" and "pulp-content" in value:
                    target_port, service = "content-24816", f"{name}-content-svc"
                    break
                if key == "rewrite" and len(values) > 1:
                    rewrite = values[1]
            if not service:
                raise SystemExit(
                    f"route_paths.py: {conf}: location {path} has no proxy_pass to pulp-api or pulp-content"
                )
            route_name = f"{name}-{app}{path.rstrip('/').replace('/', '-').replace('_', '-')}"
            entry = {
                "name": route_name,
                "path": path,
                "targetPort": target_port,
                "serviceName": service,
            }
            if rewrite:
                entry["rewrite"] = rewrite
                router.append(
                    {
                        "name": f"{route_name}2",
                        "path": path.rstrip("/"),
                        "targetPort": target_port,
                        "serviceName": service,
                        "rewrite": rewrite,
                    }
                )
            router.append(entry)
    return router


def main(argv):
    if len(argv) != 2 or not argv[1]:
        print("usage: route_paths.py NAME (the Pulp resource's name)", file=sys.stderr)
        return 64
    print(json.dumps(routes(argv[1]), indent=4))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
