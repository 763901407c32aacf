"""Config: TOML shape, defaults, and errors that name the file and key."""

from __future__ import annotations

from pathlib import Path

import dns.name
import pytest

from xdnsd.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent


def test_demo_config() -> None:
    config = load_config(ROOT / "conf" / "xdnsd.toml")
    assert [str(a) for a in config.server.listen] == ["127.0.0.1:5353", "[::1]:5353"]
    assert config.zones[0].name == dns.name.from_text("example.test.")
    assert config.zones[0].file == ROOT / "conf" / "zones" / "example.test.zone"
    assert config.server.data_dir == ROOT / "var"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nlisten = ["127.0.0.1:99999"]\n', r"\[server\].listen\[0\]: .*port must be"),
        ('[server]\nlisten = ["localhost:53"]\n', r"\[server\].listen\[0\]: .*not an IP address"),
        ("[server]\nworkers = 0\n", r"\[server\].workers: must be from 1 to 64"),
        ("[server]\nwokers = 2\n", r"\[server\]: unknown key 'wokers'"),
        ("[node]\nid = 3\n", r"\[node\].id: expected a string"),
        ('[[zones]]\nfile = "x"\n', r"\[\[zones\]\] #1: missing required key 'name'"),
        ('[[zones]]\nname = "a"\n[[zones]]\nname = "a."\n', r"zone a. is listed twice"),
        ("[server\n", r"not valid TOML"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(err.value).startswith(str(path))
