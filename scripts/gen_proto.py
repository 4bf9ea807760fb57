"""Generate the betterproto2 code for proto/ (the API contract).

    python scripts/gen_proto.py OUT          regenerate into OUT
    python scripts/gen_proto.py --check OUT  fail if OUT differs from a fresh generation
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    env = dict(os.environ)
    # The plugin formats its output with ruff, which lives next to this Python.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO}",
            f"--python_betterproto2_out={out}",
            "--python_betterproto2_opt=client_generation=async,server_generation=async",
            *sources,
        ],
        cwd=PROTO,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        sys.exit(f"protoc failed:\n{proc.stderr}")


def tree_differs(a: Path, b: Path) -> list[str]:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    diffs = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
    for sub in cmp.common_dirs:
        diffs += [f"{sub}/{d}" for d in tree_differs(a / sub, b / sub)]
    return diffs


def main(argv: list[str]) -> int:
    check = "--check" in argv
    args = [a for a in argv if a != "--check"]
    out = ROOT / (args[0] if args else "aether/_gen")
    if not check:
        shutil.rmtree(out, ignore_errors=True)
        generate(out)
        return 0
    # Generate inside the repository: the plugin formats with ruff, and ruff
    # must find this project's pyproject.toml to format the same way.
    with tempfile.TemporaryDirectory(dir=ROOT, prefix=".proto-check-") as tmp:
        fresh = Path(tmp) / "gen"
        generate(fresh)
        diffs = tree_differs(fresh, out) if out.exists() else ["<missing>"]
        if diffs:
            print(f"generated code in {out} is stale: {diffs}; run `make proto`", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
