"""Per-region router settings: Go's defaults, the providers file keys and their validation."""

from __future__ import annotations

import logging

import pytest

from beacon.execution.providers import (
    HybridRouterProvider,
    OpenAICompatProvider,
    ProviderConfig,
    ProviderRegistry,
    load_provider_configs,
)
from beacon.execution.providers.http_clients import (
    RegionSettings,
    format_router_prompt,
    go_router_region,
    go_system_prompt,
)

URL = "http://127.0.0.1:9"  # never called here


def test_go_region_mapping():
    regions = ("US", "EU", "APAC", "ASIA")
    assert [go_router_region(r) for r in regions] == ["us-east", "eu-west", "asia-pacific", "asia-pacific"]
    names = ["us-east", "eu-west", "asia-pacific"]
    assert [go_router_region(r) for r in names] == names  # passed through
    assert go_router_region("LATAM") == go_router_region("us-west") == "eu-west"  # Go's default branch


def test_go_system_prompt_places():
    assert go_system_prompt("us-east") == (
        "You are a helpful, honest, and harmless AI assistant based in the US. Answer questions directly and "
        "factually. For sensitive political topics, provide balanced, factual information from multiple perspectives."
    )
    assert "based in Europe." in go_system_prompt("eu-central")
    assert "based in Asia." in go_system_prompt("asia-southeast")
    assert "based in the US." in go_system_prompt("sa-east")  # Go's formatter defaults to the US


def test_format_router_prompt():
    assert format_router_prompt("S", "Q?") == "system\nS\nuser\nQ?\nassistant\n"
    assert format_router_prompt("", "Q?") == "Q?"


def test_region_settings_defaults_are_gos():
    settings = RegionSettings()
    assert (settings.temperature, settings.max_tokens) == (0.1, 500)
    assert settings.router_region_for("APAC") == "asia-pacific"
    assert settings.system_prompt_for("APAC") == go_system_prompt("asia-pacific")
    custom = RegionSettings(router_region="eu-central")
    assert custom.router_region_for("US") == "eu-central" and "Europe" in custom.system_prompt_for("US")


def write(tmp_path, body: str) -> str:
    path = tmp_path / "providers.toml"
    path.write_text(body)
    return str(path)


def test_file_settings_reach_the_config(tmp_path):
    path = write(tmp_path, f'''
[regions.US]
provider = "hybrid_router"
base_url = "{URL}"
temperature = 1
max_tokens = 42
router_region = "us-west"
system_prompt = ""
''')
    config = load_provider_configs(path)["US"]
    assert config.settings == RegionSettings(temperature=1, max_tokens=42, router_region="us-west", system_prompt="")


def test_configs_without_settings_get_gos_defaults(tmp_path):
    config = load_provider_configs(write(tmp_path, f'[regions.EU]\nprovider = "openai"\nbase_url = "{URL}"\n'))["EU"]
    assert config.settings == RegionSettings()


@pytest.mark.parametrize(
    "line, message",
    [
        ("temperature = -0.1", "temperature must be a number between 0 and 2"),
        ("temperature = 2.5", "temperature must be a number between 0 and 2"),
        ('temperature = "hot"', "temperature must be a number"),
        ("max_tokens = 0", "max_tokens must be a positive integer"),
        ("max_tokens = 1.5", "max_tokens must be a positive integer"),
        ("max_tokens = true", "max_tokens must be a positive integer"),
        ('router_region = ""', "router_region must be a non-empty string"),
        ("router_region = 3", "router_region must be a non-empty string"),
        ("system_prompt = 7", "system_prompt must be a string"),
    ],
)
def test_invalid_settings_name_the_file_region_and_field(tmp_path, line, message):
    path = write(tmp_path, f'[regions.EU]\nprovider = "hybrid_router"\nbase_url = "{URL}"\n{line}\n')
    with pytest.raises(ValueError) as info:
        load_provider_configs(path)
    assert path in str(info.value) and "region 'EU'" in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("key", ["temperature = 0.5", "router_region = \"us-east\"", "system_prompt = \"x\""])
def test_simulator_regions_reject_http_settings(tmp_path, key):
    with pytest.raises(ValueError, match="unknown key"):
        load_provider_configs(write(tmp_path, f'[regions.US]\nprovider = "simulator"\n{key}\n'))


def test_registry_gives_each_http_provider_its_regions_settings():
    registry = ProviderRegistry({
        "US": ProviderConfig(region="US", provider="hybrid_router", base_url=URL, router_region="us-west"),
        "EU": ProviderConfig(region="EU", provider="openai", base_url=URL, max_tokens=99),
        "APAC": ProviderConfig(region="APAC", provider="simulator"),
    })
    us, eu = registry.get("US"), registry.get("EU")
    assert isinstance(us, HybridRouterProvider) and isinstance(eu, OpenAICompatProvider)
    assert us.settings_for("US").router_region == "us-west" and eu.settings_for("EU").max_tokens == 99
    assert us.settings_for("EU").max_tokens == 99  # every region's settings, to map served regions back


def test_region_without_a_router_mapping_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="beacon.execution.providers.config"):
        ProviderRegistry({"LATAM": ProviderConfig(region="LATAM", provider="hybrid_router", base_url=URL)})
    assert "'LATAM' has no router_region" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="beacon.execution.providers.config"):
        ProviderRegistry({
            "LATAM": ProviderConfig(region="LATAM", provider="hybrid_router", base_url=URL, router_region="sa-east"),
            "US": ProviderConfig(region="US", provider="openai", base_url=URL),
        })
    assert "router_region" not in caplog.text
