"""Generate the Python gRPC stubs in v1/ from proto/juggler/v1/*.proto.

    python scripts/gen_stubs.py           # rewrite v1/
    python scripts/gen_stubs.py --check   # exit 1 if v1/ is stale

Reproducible: the output depends only on the .proto files and the pinned
grpcio-tools version (see pyproject.toml).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "v1"
INIT = '"""Generated gRPC stubs for proto/juggler/v1 (scripts/gen_stubs.py). Do not edit."""\n'


def generate(dest: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.glob("juggler/v1/*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        dest.mkdir(parents=True, exist_ok=True)
        for f in sorted((Path(tmp) / "juggler" / "v1").iterdir()):
            shutil.copyfile(f, dest / f.name)
    (dest / "__init__.py").write_text(INIT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when stale")
    args = parser.parse_args()
    if not args.check:
        for old in OUT_DIR.glob("*_pb2*.py*"):
            old.unlink()
        generate(OUT_DIR)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want = sorted(p.name for p in fresh.iterdir())
        have = sorted(p.name for p in OUT_DIR.iterdir() if p.suffix in (".py", ".pyi"))
        _, mismatch, errors = filecmp.cmpfiles(fresh, OUT_DIR, want, shallow=False)
        if want != have or mismatch or errors:
            print(f"v1/ is stale: differs in {sorted(set(mismatch + errors) ^ set())} "
                  f"(files {have} vs {want}); run python scripts/gen_stubs.py", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
