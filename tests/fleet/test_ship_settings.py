"""The ship settings are settings of the watch config (its `ship` section): declared once, read
from the file, overridden by flags that `watch` and `ship` both take, with one set of defaults
(ffrtmp.defaults). --ship-interval is a duration like every other duration flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ffrtmp import defaults
from ffrtmp.cli.ship import ship
from ffrtmp.cli.watch import watch
from ffrtmp.config import ConfigError, apply_overrides, effective_dict, load_config
from ffrtmp.fleet.shipper import DEFAULT_BATCH_SIZE

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "watch-config.yaml"
CENTRAL = "postgresql+psycopg://edge@fleet.invalid/ffrtmp"


def settings_of(command, args: list[str], env: dict | None = None, monkeypatch=None):
    """The ship settings a command line gives, parsed by click as the command parses it."""
    for name, value in (env or {}).items():
        monkeypatch.setenv(name, value)
    ctx = command.make_context(command.name, list(args))
    given = {k: v for k, v in ctx.params.items() if k in {"node_label", "ship_interval",
                                                           "ship_batch_size"}}  # fmt: skip
    return apply_overrides(load_config(ctx.params.get("watch_config")), **given).ship


def test_ship_interval_is_a_duration_and_a_bare_number_is_seconds(monkeypatch):
    monkeypatch.delenv("FFRTMP_SHIP_INTERVAL", raising=False)
    assert settings_of(ship, ["--to", CENTRAL, "--ship-interval", "1m30s"]).interval == 90.0
    assert settings_of(ship, ["--to", CENTRAL, "--ship-interval", "0.3"]).interval == 0.3
    assert settings_of(watch, ["--ship-interval", "500ms"]).interval == 0.5
    with pytest.raises(ConfigError, match=r"--ship-interval must be at least 100ms, not '50ms'"):
        settings_of(watch, ["--ship-interval", "50ms"])


def test_ship_and_watch_ship_in_batches_of_one_default(monkeypatch):
    for name in ("FFRTMP_SHIP_BATCH_SIZE", "FFRTMP_SHIP_INTERVAL", "FFRTMP_WATCH_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    by_ship = settings_of(ship, ["--to", CENTRAL])
    by_watch = settings_of(watch, [])
    assert by_ship == by_watch
    assert by_ship.batch_size == defaults.SHIP_BATCH_SIZE == DEFAULT_BATCH_SIZE
    assert by_ship.interval == defaults.SHIP_INTERVAL_SECONDS
    # `ship` keeps its older name for the flag.
    assert settings_of(ship, ["--to", CENTRAL, "--batch-size", "50"]).batch_size == 50
    assert settings_of(watch, ["--ship-batch-size", "70"]).batch_size == 70
    monkeypatch.setenv("FFRTMP_SHIP_BATCH_SIZE", "90")
    assert settings_of(watch, []).batch_size == 90


def test_the_ship_section_of_the_file_and_the_flags_over_it(tmp_path, monkeypatch):
    for name in ("FFRTMP_SHIP_BATCH_SIZE", "FFRTMP_SHIP_INTERVAL", "FFRTMP_NODE_LABEL"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "watch.yaml"
    path.write_text("ship:\n  node_label: edge-9\n  interval: 30s\n  batch_size: 100\n")
    from_file = settings_of(ship, ["--to", CENTRAL, "--watch-config", str(path)])
    assert (from_file.node_label, from_file.interval, from_file.batch_size) == ("edge-9", 30, 100)
    flagged = settings_of(watch, ["--watch-config", str(path), "--ship-interval", "2s"])
    assert (flagged.node_label, flagged.interval) == ("edge-9", 2.0)
    assert effective_dict(load_config(path))["ship"] == {
        "node_label": "edge-9",
        "interval": "30s",
        "batch_size": 100,
    }
    path.write_text("ship:\n  interval: 10ms\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == f"{path}, line 2: ship.interval must be at least 100ms, not '10ms'"


def test_the_example_config_shows_every_ship_key():
    example = yaml.safe_load(EXAMPLE.read_text())
    assert set(example["ship"]) == set(effective_dict(load_config(None))["ship"])
