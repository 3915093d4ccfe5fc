"""The parts of the top-level Dockerfile that scripts/build-image mirrors.

scripts/build-image builds the Dockerfile's image without a Docker daemon
(mmdebstrap + umoci) and reads the Dockerfile, through this module, for what
must be the same in both: the Debian packages (`ARG PACKAGES="…"`), the files
`COPY .` takes (the build context less `.dockerignore`'s patterns) and the image
config (ENV, WORKDIR, ENTRYPOINT, CMD). The smoke test compares the built
image's config with `parse()`'s.

Only the instruction forms the Dockerfile uses are understood; anything else in
those instructions raises DockerfileError rather than being misread. Rules taken
from Docker's reference (docs.docker.com/reference/dockerfile and
/build/concepts/context/#dockerignore-files): a backslash at the end of a line
continues it, `#` starts a comment line; ENTRYPOINT and CMD in exec (JSON) form;
ENV `KEY=VALUE` pairs; a .dockerignore pattern matches a path relative to the
context or any of its parents, `**` matches any number of directories.

Standard library only: build-image runs it with the host's python3
(`python3 testing/dockerfile.py --shell Dockerfile` / `--context DIR`).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path


class DockerfileError(ValueError):
    """An instruction in a form this module does not understand."""


@dataclass
class Dockerfile:
    packages: list[str] = field(default_factory=list)   # ARG PACKAGES, split on blanks
    env: dict[str, str] = field(default_factory=dict)   # ENV, in order
    workdir: str = "/"
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION in upper case, its arguments) per logical line of `text`:
    continuation lines joined, comment and blank lines dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue   # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole:
            word, _, rest = whole.partition(" ")
            out.append((word.upper(), rest.strip()))
    if pending.strip():
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _exec_form(instruction: str, args: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError as e:
        raise DockerfileError(f"{instruction} {args}: only the exec (JSON) form is read") from e
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DockerfileError(f"{instruction} {args}: not a JSON list of strings")
    return value


def parse(text: str) -> Dockerfile:
    """The packages and image config of a Dockerfile's text.

    Raises DockerfileError for ENTRYPOINT/CMD in shell form, ENV without `=`, a
    relative WORKDIR, or no `ARG PACKAGES=`."""
    df = Dockerfile()
    seen_packages = False
    for word, args in instructions(text):
        if word == "ARG" and args.startswith("PACKAGES="):
            (assignment,) = shlex.split(args)
            df.packages = assignment.partition("=")[2].split()
            seen_packages = True
        elif word == "ENV":
            for pair in shlex.split(args):
                key, eq, value = pair.partition("=")
                if not eq:
                    raise DockerfileError(f"ENV {args}: only the KEY=VALUE form is read")
                df.env[key] = value
        elif word == "WORKDIR":
            if not args.startswith("/"):
                raise DockerfileError(f"WORKDIR {args}: only absolute paths are read")
            df.workdir = args
        elif word == "ENTRYPOINT":
            df.entrypoint = _exec_form(word, args)
        elif word == "CMD":
            df.cmd = _exec_form(word, args)
    if not seen_packages:
        raise DockerfileError('no `ARG PACKAGES="…"`: the Debian packages to install')
    return df


def umoci_config_args(df: Dockerfile) -> list[str]:
    """`umoci config` options giving an image `df`'s ENV, WORKDIR, ENTRYPOINT
    and CMD (in the `--opt=value` form: values may start with `--`)."""
    args = [f"--config.env={k}={v}" for k, v in df.env.items()]
    args.append(f"--config.workingdir={df.workdir}")
    args += [f"--config.entrypoint={a}" for a in df.entrypoint]
    args += [f"--config.cmd={a}" for a in df.cmd]
    return args


def ignore_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore's text, cleaned as Docker cleans them.

    Raises DockerfileError for `!` exceptions (not supported here)."""
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("!"):
            raise DockerfileError(f".dockerignore {line}: exceptions are not supported")
        patterns.append(os.path.normpath(line.lstrip("/")))
    return patterns


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether `path` (relative to the context, '/'-separated) or one of its
    parent directories matches one of `patterns`."""
    parts = path.split("/")
    for n in range(1, len(parts) + 1):
        candidate = "/".join(parts[:n])
        for pattern in patterns:
            if pattern.startswith("**/"):
                tail = pattern[3:]
                if any(fnmatch.fnmatchcase("/".join(parts[i:n]), tail) for i in range(n)):
                    return True
            elif fnmatch.fnmatchcase(candidate, pattern):
                return True
    return False


def context_files(root: Path, patterns: list[str]) -> list[str]:
    """Every file, symlink and directory under `root` that `COPY .` copies, as
    './relative/path', parents before children; ignored directories are not
    entered."""
    out: list[str] = []
    for here, dirs, files in os.walk(root):
        rel_here = os.path.relpath(here, root)
        prefix = "" if rel_here == "." else rel_here + "/"
        dirs[:] = sorted(d for d in dirs if not ignored(prefix + d, patterns))
        for name in dirs + sorted(files):
            if name in files and ignored(prefix + name, patterns):
                continue
            out.append("./" + prefix + name)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--shell", metavar="DOCKERFILE",
                      help="print PACKAGES, WORKDIR and the UMOCI_CONFIG array as shell")
    what.add_argument("--context", metavar="DIR",
                      help="print, NUL-separated, the paths under DIR that COPY . takes "
                           "(DIR/.dockerignore applied)")
    args = p.parse_args(argv)
    if args.shell:
        df = parse(Path(args.shell).read_text())
        print(f"PACKAGES={shlex.quote(' '.join(df.packages))}")
        print(f"WORKDIR={shlex.quote(df.workdir)}")
        print("UMOCI_CONFIG=(" + " ".join(shlex.quote(a) for a in umoci_config_args(df)) + ")")
    else:
        root = Path(args.context)
        ignore = root / ".dockerignore"
        patterns = ignore_patterns(ignore.read_text()) if ignore.exists() else []
        sys.stdout.write("".join(f + "\0" for f in context_files(root, patterns)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
