"""Offline step pricing: USD per finished LLM step, for `letta_step_cost_usd_total{model, provider}`.

Prices come from the `genai-prices` package's bundled snapshot (never refreshed at run time: the
exporter must work offline and count the same for the same steps), overridable per model with
`--price-table FILE` (JSON, or YAML for any other suffix):

    gpt-4o-mini: {input: 0.15, output: 0.6, cached_input: 0.075, cache_write: 0}

USD per million tokens; `input` and `output` are required, `cached_input` and `cache_write` default
to `input` (what genai-prices itself does for a model without a cache price). One step costs

    (prompt - cached_input - cache_write) * input + cached_input * cached_input_price
    + cache_write * cache_write_price + completion * output          (per million tokens)

since Letta's prompt tokens include the cached and cache-write ones; reasoning tokens are inside
the completion tokens and not priced apart. genai-prices' per-request prices (a handful of search
models) are added per step, and its long-context tiers are chosen by the step's prompt tokens, so
a shipped price equals `genai_prices.calc_price` for the same usage.

Matching, in order (`PriceTable.price`):
1. an override naming the step's model (exact, then lower-cased; then without a `provider/` prefix);
2. a self-hosted provider (`SELF_HOSTED`) is unpriced: `self_hosted`;
3. a provider genai-prices knows prices its own model, or one it resells (Azure: OpenAI's), wherever
   the endpoint is (proxies and gateways keep the provider name); else `unknown_model`;
4. no provider, or one genai-prices does not know (a custom gateway name): the model alone, else
   `unknown_model` (no provider) or `unknown_provider`.
A model like `openai-proxy/gpt-4o-mini` (a Letta handle) is retried without its prefix, and in rule 4
the prefix is tried as the provider. Matching is cached per (provider, model) and prices are compiled
to floats, so a step costs about a microsecond; genai-prices' own `calc_price` takes ~150 µs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import genai_prices
import yaml
from genai_prices import types as gp
from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

from exporter.config import ConfigError
from exporter.model import Step
from exporter.types import UnpricedReason

SELF_HOSTED: Final = frozenset(
    {
        "ollama",
        "vllm",
        "sglang",
        "lmstudio",
        "lmstudio_openai",
        "lmstudio_legacy",
        "lmstudio_chatcompletions",
        "llamacpp",
        "llama_cpp",
        "koboldcpp",
        "webui",
        "webui_legacy",
    }
)
"""Letta provider / endpoint types served by the operator's own hardware (compared lower-cased,
`-` as `_`). Checked before genai-prices: its provider matching is by substring, so it takes
`lmstudio_openai` for OpenAI."""

PRICE_FIELDS: Final = ("input", "output", "cached_input", "cache_write")
_REQUIRED: Final = ("input", "output")
_SHIPPED_KEYS: Final = ("input_mtok", "output_mtok", "cache_read_mtok", "cache_write_mtok", "requests_kcount")
_CACHE_LIMIT: Final = 10_000  # distinct (provider, model) pairs remembered; cleared when full


@dataclass(frozen=True, slots=True)
class _Rates:
    """USD per token (not per million: one multiply per count) and per request."""

    input: float
    output: float
    cached_input: float
    cache_write: float
    request: float = 0.0

    def cost(self, prompt: int, cached: int, written: int, completion: int) -> float:
        return (
            (prompt - cached - written) * self.input
            + cached * self.cached_input
            + written * self.cache_write
            + completion * self.output
            + self.request
        )


_Tiers = tuple[tuple[int, _Rates], ...]
"""Rates by prompt size: the first `(start, rates)` with prompt tokens > start applies; the last
entry's start is -1 (genai-prices' rule: a tier applies above its start)."""


class _Shipped:
    """One genai-prices model: its prices compiled per `ModelPrice` (some change with the date or
    the time of day, so the price set is picked per step)."""

    __slots__ = ("_compiled", "fixed", "info")

    def __init__(self, info: gp.ModelInfo) -> None:
        self.info = info
        self._compiled: dict[int, tuple[gp.ModelPrice, _Tiers]] = {}
        self.fixed = _compile(info.prices) if isinstance(info.prices, gp.ModelPrice) else None

    def tiers(self, at: datetime) -> _Tiers:
        if self.fixed is not None:
            return self.fixed
        prices = self.info.get_prices(at)  # one of the model's own objects: id() is stable
        hit = self._compiled.get(id(prices))
        if hit is None:
            hit = self._compiled[id(prices)] = (prices, _compile(prices))  # keeps `prices` alive
        return hit[1]


_Match = _Tiers | _Shipped | UnpricedReason


class PriceTable:
    """Prices steps from the shipped table and an optional override; see the module docstring."""

    def __init__(self, overrides: Mapping[str, _Rates] | None = None, override_path: str = "") -> None:
        self._overrides = dict(overrides or {})
        self._override_path = override_path
        self._snapshot = get_snapshot()  # the bundled data: nothing here calls UpdatePrices
        self._cache: dict[tuple[str | None, str], _Match] = {}

    @classmethod
    def load(cls, override: Path | None = None) -> PriceTable:
        """The shipped table, plus `override` if given; a bad override raises ConfigError."""
        if override is None:
            return cls()
        return cls(_read_override(override), str(override))

    @property
    def info(self) -> dict[str, str]:
        """Labels of `letta_exporter_price_table_info`."""
        return {
            "table": "genai-prices",
            "version": genai_prices.__version__,
            "override": self._override_path,
            "override_models": str(len(self._overrides)),
        }

    def price(self, step: Step, at: datetime) -> float | UnpricedReason:
        """USD of one step at its time `at` (naive: UTC), or why it cannot be priced.
        `invalid_tokens` is reported only for a step that would otherwise be priced."""
        if not step.model:
            return "no_model"
        key = (step.provider, step.model)
        match = self._cache.get(key)
        if match is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            match = self._cache[key] = self._match(step.provider, step.model)
        if isinstance(match, str):
            return match
        prompt, cached, written, completion = (
            step.input_tokens,
            step.cached_input_tokens,
            step.cache_write_tokens,
            step.output_tokens,
        )
        if min(prompt, cached, written, completion) < 0 or cached + written > prompt:
            return "invalid_tokens"
        if isinstance(match, _Shipped):
            if at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            match = match.tiers(at)
        for start, rates in match:
            if prompt > start:
                return rates.cost(prompt, cached, written, completion)
        raise AssertionError("the last tier starts at -1")  # pragma: no cover

    def _match(self, provider: str | None, model: str) -> _Match:
        for ref in _refs(model):
            rates = self._overrides.get(ref)
            if rates is None:
                rates = self._overrides.get(ref.lower())
            if rates is not None:
                return ((-1, rates),)
        if provider is not None and provider.lower().strip().replace("-", "_") in SELF_HOSTED:
            return "self_hosted"
        providers = self._snapshot.providers
        known = find_provider_by_id(providers, provider) if provider else None
        if known is not None:
            found = next(filter(None, (known.find_model(ref, all_providers=providers) for ref in _refs(model))), None)
            return _Shipped(found) if found is not None else "unknown_model"
        for ref in _refs(model):
            if found := self._by_model(ref):
                return _Shipped(found)
        return "unknown_model" if provider is None else "unknown_provider"

    def _by_model(self, ref: str) -> gp.ModelInfo | None:
        """Model alone: a `prefix/model` ref's prefix as the provider, then every provider whose
        model pattern matches, in genai-prices' order (it tries only the first)."""
        providers = self._snapshot.providers
        prefix, slash, rest = ref.partition("/")
        named = find_provider_by_id(providers, prefix) if slash else None
        if named is not None and (found := named.find_model(rest, all_providers=providers)):
            return found
        lowered = ref.lower()
        matching = (p for p in providers if p.model_match is not None and p.model_match.is_match(lowered))
        return next(filter(None, (p.find_model(ref, all_providers=providers) for p in matching)), None)


def _refs(model: str) -> Iterator[str]:
    """The model, then without each leading `prefix/` in turn (Letta handles, gateway names)."""
    ref = model
    while True:
        yield ref
        _, slash, ref = ref.partition("/")
        if not slash or not ref:
            return


def _compile(prices: gp.ModelPrice) -> _Tiers:
    """Float rates per prompt-size tier of one genai-prices price set. A missing cache price is the
    input price and a missing input or output price is zero, as in genai-prices' own decomposition;
    its other units (audio, images, searches) have no count in a step's usage."""
    values = {key: getattr(prices, key, None) for key in _SHIPPED_KEYS}
    starts = {t.start for v in values.values() if isinstance(v, gp.TieredPrices) for t in v.tiers}

    def at(key: str, start: int) -> float | None:
        value = values[key]
        if isinstance(value, gp.TieredPrices):
            value = next((t.price for t in reversed(value.tiers) if t.start <= start), value.base)
        return None if value is None else float(value)

    tiers: list[tuple[int, _Rates]] = []
    for start in [*sorted(starts, reverse=True), -1]:
        input_ = at("input_mtok", start) or 0.0
        cached, written = at("cache_read_mtok", start), at("cache_write_mtok", start)
        tiers.append(
            (
                start,
                _per_million(
                    input_,
                    at("output_mtok", start) or 0.0,
                    input_ if cached is None else cached,
                    input_ if written is None else written,
                    (at("requests_kcount", start) or 0.0) / 1000,
                ),
            )
        )
    return tuple(tiers)


def _per_million(input_: float, output: float, cached: float, written: float, request: float = 0.0) -> _Rates:
    """From USD per million tokens (and USD per request)."""
    return _Rates(input_ / 1e6, output / 1e6, cached / 1e6, written / 1e6, request)


def _read_override(path: Path) -> dict[str, _Rates]:
    """Parse and check the whole file at start-up: a bad price is never discovered mid-count."""
    where = f"--price-table: {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--price-table: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where} is not UTF-8 text") from None
    try:
        loaded: object = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{where} must map model names to their prices in USD per million tokens, "
            "e.g. gpt-4o-mini: {input: 0.15, output: 0.6, cached_input: 0.075, cache_write: 0}"
        )
    table: dict[str, _Rates] = {}
    for model, entry in loaded.items():
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{where}: model names must be non-empty strings, not {model!r}")
        table[model] = _read_entry(f"{where}: model {model!r}", entry)
    return table


def _read_entry(where: str, entry: object) -> _Rates:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of {', '.join(PRICE_FIELDS)}, not {entry!r}")
    unknown = sorted(str(key) for key in entry if key not in PRICE_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown price {', '.join(unknown)} (known: {', '.join(PRICE_FIELDS)})")
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise ConfigError(f"{where}: missing {' and '.join(missing)} (USD per million tokens)")
    prices: dict[str, float] = {}
    for key, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: {key} must be a number (USD per million tokens), not {value!r}")
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{where}: {key} must be a finite number >= 0, not {value!r}")
        prices[key] = float(value)
    input_ = prices["input"]
    return _per_million(input_, prices["output"], prices.get("cached_input", input_), prices.get("cache_write", input_))
