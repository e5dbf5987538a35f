"""Step prices: the design's formula, genai-prices' bundled table offline, overrides, and every
reason a step goes unpriced."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import genai_prices
import pytest
from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

from exporter.config import ConfigError
from exporter.model import Step
from exporter.pricing import PriceTable

AT = datetime(2026, 11, 1, tzinfo=UTC)


def step(model: str | None = "gpt-4o-mini", provider: str | None = "openai", **tokens: int) -> Step:
    counts = {"input_tokens": 5000, "output_tokens": 700, "cached_input_tokens": 1000, "cache_write_tokens": 300}
    return Step.model_validate({"id": "step-1", "model": model, "provider": provider, **counts, **tokens})


def override(tmp_path: Path, text: str, suffix: str = ".yaml") -> PriceTable:
    path = tmp_path / f"prices{suffix}"
    path.write_text(text)
    return PriceTable.load(path)


def shipped_rate(provider: str, model: str, key: str, at: datetime = AT) -> float:
    """A per-million price straight from genai-prices' data."""
    found = find_provider_by_id(get_snapshot().providers, provider)
    info = found.find_model(model) if found else None
    assert info is not None
    value = getattr(info.get_prices(at), key)
    assert isinstance(value, Decimal)
    return float(value)


def test_an_override_prices_with_the_design_formula(tmp_path: Path) -> None:
    table = override(tmp_path, "gpt-4o-mini: {input: 0.15, output: 0.6, cached_input: 0.075, cache_write: 0.3}\n")
    # (5000 - 1000 - 300) * 0.15 + 1000 * 0.075 + 300 * 0.3 + 700 * 0.6, per million
    assert table.price(step(), AT) == pytest.approx(0.001_14)
    assert table.price(step(reasoning_tokens=400), AT) == table.price(step(), AT)  # inside the completion
    assert table.price(step(input_tokens=0, output_tokens=0, cached_input_tokens=0, cache_write_tokens=0), AT) == 0


def test_cache_prices_default_to_the_input_price_and_json_works(tmp_path: Path) -> None:
    table = override(tmp_path, '{"my-model": {"input": 2, "output": 8}}', ".json")
    assert table.price(step("my-model", "vllm"), AT) == pytest.approx((5000 * 2 + 700 * 8) / 1e6)
    assert table.info == {
        "table": "genai-prices",
        "version": genai_prices.__version__,
        "override": str(tmp_path / "prices.json"),
        "override_models": "1",
    }


def test_the_bundled_price_equals_the_formula_with_genai_prices_own_rates() -> None:
    fresh, cached, output = (
        shipped_rate("openai", "gpt-4o-mini", k) for k in ("input_mtok", "cache_read_mtok", "output_mtok")
    )
    assert fresh > cached > 0 and output > 0  # gpt-4o-mini has no cache-write price: writes cost `input`
    expected = (3700 * fresh + 1000 * cached + 300 * fresh + 700 * output) / 1_000_000
    assert PriceTable.load().price(step(), AT) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("prompt", [5000, 300_000])  # 300k: above every long-context tier
def test_the_fast_path_equals_genai_prices_calc_price_for_every_bundled_model(prompt: int) -> None:
    table, compared = PriceTable.load(), 0
    usage = genai_prices.Usage(input_tokens=prompt, cache_read_tokens=1000, cache_write_tokens=300, output_tokens=700)
    for provider in get_snapshot().providers:
        for model in provider.models:
            got = table.price(step(model.id, provider.id, input_tokens=prompt), AT)
            try:
                want = genai_prices.calc_price(usage, model.id, provider_id=provider.id, genai_request_timestamp=AT)
            except LookupError:
                continue
            assert got == pytest.approx(float(want.total_price), rel=1e-9, abs=1e-15), (provider.id, model.id)
            compared += 1
    assert compared > 2000


def test_long_context_tiers_follow_the_prompt_size() -> None:
    table = PriceTable.load()
    short, long = (table.price(step("claude-sonnet-4-5", "anthropic", input_tokens=n), AT) for n in (200_000, 200_001))
    assert isinstance(short, float) and isinstance(long, float)
    assert long > short * 1.5  # Anthropic doubles the input price above 200k prompt tokens


def test_the_price_at_the_steps_time_is_used_and_is_deterministic() -> None:
    table = PriceTable.load()
    before, after = datetime(2025, 6, 9, tzinfo=UTC), datetime(2025, 6, 11, tzinfo=UTC)  # o3's price cut
    assert (
        table.price(step("o3"), before)
        == table.price(step("o3"), before)
        == PriceTable.load().price(step("o3"), before)
    )
    old, new = table.price(step("o3"), before), table.price(step("o3"), after)
    assert isinstance(old, float) and isinstance(new, float) and old > 4 * new
    peak, off_peak = datetime(2026, 11, 1, 12, tzinfo=UTC), datetime(2026, 11, 1, 20, tzinfo=UTC)
    assert table.price(step("deepseek-chat", "deepseek"), peak) != table.price(
        step("deepseek-chat", "deepseek"), off_peak
    )
    assert table.price(step("o3"), before.replace(tzinfo=None)) == old  # naive: UTC


@pytest.mark.parametrize(
    ("model", "provider", "priced_like"),
    [
        ("openai-proxy/gpt-4o-mini", "openai", ("gpt-4o-mini", "openai")),  # a Letta handle as the model
        ("openai/gpt-4o-mini", None, ("gpt-4o-mini", "openai")),  # the handle's prefix names the provider
        ("openai-proxy/gpt-4o-mini", "my-gateway", ("gpt-4o-mini", "openai")),
        ("gpt-4o-mini-2024-07-18", "openai", ("gpt-4o-mini", "openai")),  # a dated name
        ("gpt-4o", "my-gateway", ("gpt-4o", "openai")),  # an unknown provider: matched by the model alone
        ("gpt-4o", None, ("gpt-4o", "openai")),
        ("claude-sonnet-4-5-20250929", None, ("claude-sonnet-4-5", "anthropic")),
        ("gemini-2.5-flash", "google_ai", ("gemini-2.5-flash", "google_vertex")),  # Letta names, one table
        ("grok-4", "xai", ("grok-4", None)),
    ],
)
def test_letta_names_and_handles_match_the_bundled_models(
    model: str, provider: str | None, priced_like: tuple[str, str | None]
) -> None:
    table = PriceTable.load()
    got = table.price(step(model, provider), AT)
    assert isinstance(got, float) and got > 0
    assert got == table.price(step(*priced_like), AT)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"model": None}, "no_model"),
        ({"model": ""}, "no_model"),
        ({"model": "llama3.1:8b", "provider": "ollama"}, "self_hosted"),
        ({"model": "gpt-4o-mini", "provider": "vllm"}, "self_hosted"),  # a known name on one's own GPUs
        ({"model": "gpt-4o-mini", "provider": "lmstudio_openai"}, "self_hosted"),  # not genai-prices' "openai"
        ({"model": "gpt-4o-mini-ft4", "provider": "openai"}, "unknown_model"),
        ({"model": "claude-sonnet-4-5", "provider": "openai"}, "unknown_model"),  # the provider's own models only
        ({"model": "house-model-7", "provider": None}, "unknown_model"),
        ({"model": "house-model-7", "provider": "my-gateway"}, "unknown_provider"),
        ({"model": "glm-4.6", "provider": "zai_coding"}, "unknown_provider"),  # a Letta name genai-prices lacks
        ({"cached_input_tokens": 4900}, "invalid_tokens"),  # cached + cache_write > prompt
        ({"output_tokens": -1}, "invalid_tokens"),
    ],
)
def test_every_unpriced_step_says_why(kwargs: dict[str, str | int | None], reason: str) -> None:
    assert PriceTable.load().price(step(**kwargs), AT) == reason  # type: ignore[arg-type]


def test_an_override_wins_and_prices_self_hosted_models(tmp_path: Path) -> None:
    table = override(tmp_path, "gpt-4o-mini: {input: 1, output: 1}\nllama3.1:8b: {input: 0.01, output: 0.02}\n")
    assert PriceTable.load().price(step(), AT) != pytest.approx((5000 + 700) / 1e6)
    assert table.price(step(), AT) == pytest.approx((5000 + 700) / 1e6)
    assert table.price(step("llama3.1:8b", "ollama"), AT) == pytest.approx((5000 * 0.01 + 700 * 0.02) / 1e6)
    assert table.price(step("GPT-4o-mini"), AT) == table.price(step(), AT)  # the model lower-cased
    assert table.price(step("openai-proxy/gpt-4o-mini"), AT) == table.price(step(), AT)  # a handle
    assert table.price(step("llama3.1:70b", "ollama"), AT) == "self_hosted"
    assert table.price(step("gpt-4o", "openai"), AT) == PriceTable.load().price(step("gpt-4o", "openai"), AT)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpt-4o-mini: {input: -1, output: 1}", "model 'gpt-4o-mini': input must be a finite number >= 0, not -1"),
        ("gpt-4o-mini: {input: 1, output: cheap}", "model 'gpt-4o-mini': output must be a number"),
        ("gpt-4o-mini: {input: '0.15', output: 1}", "input must be a number (USD per million tokens), not '0.15'"),
        ("gpt-4o-mini: {input: .nan, output: 1}", "input must be a finite number >= 0"),
        ("gpt-4o-mini: {input: .inf, output: 1}", "input must be a finite number >= 0"),
        ("gpt-4o-mini: {input: true, output: 1}", "input must be a number"),
        ("gpt-4o-mini: {input: null, output: 1}", "input must be a number"),
        ("gpt-4o-mini: {input: 1}", "model 'gpt-4o-mini': missing output"),
        ("gpt-4o-mini: {cached_input: 1}", "model 'gpt-4o-mini': missing input and output"),
        ("gpt-4o-mini: {input: 1, output: 1, cached: 1}", "model 'gpt-4o-mini': unknown price cached"),
        ("gpt-4o-mini: 0.15", "model 'gpt-4o-mini': expected a mapping of input, output"),
        ("1.5: {input: 1, output: 1}", "model names must be non-empty strings, not 1.5"),
        ("- gpt-4o-mini", "must map model names to their prices"),
        ("", "must map model names to their prices"),
        ("gpt-4o-mini: {input: 1", "is not valid YAML"),
    ],
)
def test_a_bad_yaml_override_fails_at_start_up_naming_the_file_model_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"^--price-table: .*prices\.yaml") as caught:
        override(tmp_path, text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"gpt-4o-mini": {"input": 1, "output": -0.5}}', "model 'gpt-4o-mini': output must be a finite number >= 0"),
        ('{"gpt-4o-mini": {"input": "1", "output": 1}}', "model 'gpt-4o-mini': input must be a number"),
        ('{"gpt-4o-mini": {"output": 1}}', "model 'gpt-4o-mini': missing input"),
        ('{"gpt-4o-mini": {"input": 1, "output": 1, "reasoning": 2}}', "unknown price reasoning"),
        ('{"gpt-4o-mini": [0.15, 0.6]}', "expected a mapping"),
        ('{"": {"input": 1, "output": 1}}', "model names must be non-empty strings"),
        ("[]", "must map model names to their prices"),
        ('{"gpt-4o-mini": {input: 1}}', "is not valid JSON"),
        ("gpt-4o-mini: {input: 1, output: 1}", "is not valid JSON"),  # .json is read as JSON only
    ],
)
def test_a_bad_json_override_fails_at_start_up_naming_the_file_model_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=r"^--price-table: .*prices\.json") as caught:
        override(tmp_path, text, ".json")
    assert message in str(caught.value)


def test_an_unreadable_override_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--price-table: cannot read .*absent\.yaml"):
        PriceTable.load(tmp_path / "absent.yaml")
    (tmp_path / "latin1.yaml").write_bytes(b"caf\xe9: {input: 1, output: 1}\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml is not UTF-8"):
        PriceTable.load(tmp_path / "latin1.yaml")


def test_the_shipped_table_is_described_by_its_info_labels() -> None:
    assert PriceTable.load().info == {
        "table": "genai-prices",
        "version": genai_prices.__version__,
        "override": "",
        "override_models": "0",
    }
