"""The README documents what the code does: its configuration table is generated from the code."""

from __future__ import annotations

import re
from pathlib import Path

from exporter import config
from exporter.ledger import FAMILIES

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_configuration_table_is_current() -> None:
    block = README.split("<!-- config-table:start -->\n")[1].split("<!-- config-table:end -->")[0]
    assert block.strip() == config.reference_table(), "regenerate with config.reference_table()"


def test_readme_metric_table_lists_every_ledger_metric() -> None:
    documented = set(re.findall(r"`(letta_[a-z_]+)`", README))
    for name, family in FAMILIES.items():
        exposed = "letta_" + name + ("_total" if family.buckets is None else "")
        assert exposed in documented, exposed
