"""`helm lint --strict` passes with the defaults and with every option, and really fails a broken chart."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.helm.support import CHART, Helm, ValuesFile, all_options


def test_lint_strict_defaults(helm: Helm) -> None:
    result = helm("lint", "--strict", CHART)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_lint_strict_all_options(helm: Helm, values_file: ValuesFile) -> None:
    result = helm("lint", "--strict", CHART, "-f", values_file(all_options()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_strict_catches_a_broken_template(helm: Helm, tmp_path: Path) -> None:
    """The lint gate is real: the same chart with one undefined value path fails it."""
    broken = tmp_path / "letta-exporter"
    shutil.copytree(CHART, broken, symlinks=False)
    service = broken / "templates" / "service.yaml"
    service.write_text(
        service.read_text(encoding="utf-8") + "  clusterIP: {{ .Values.nope.deeper }}\n", encoding="utf-8"
    )
    result = helm("lint", "--strict", broken)
    assert result.returncode != 0
    assert "service.yaml" in result.stdout + result.stderr
