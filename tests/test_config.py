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


ZONE_FILE = ROOT / "conf" / "zones" / "example.test.zone"


def _zone(extra: str) -> str:
    return f'[[zones]]\nname = "example.test"\nfile = "{ZONE_FILE}"\n{extra}\n'


def test_keys_inline_and_from_a_bind_key_file(tmp_path: Path) -> None:
    (tmp_path / "k2.key").write_text(
        '# made by tsig-keygen\nkey "k2" {\n\talgorithm hmac-sha512;\n'
        '\tsecret "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0";\n};\n'
    )
    path = tmp_path / "x.toml"
    path.write_text(
        '[keys.k1]\nalgorithm = "hmac-md5"\nsecret = "c2VjcmV0"\n'
        '[keys.k2]\nfile = "k2.key"\n'
        + _zone('update_policy = ["grant k1 zonesub ANY", "deny k2 name a.example.test. A"]')
    )
    config = load_config(path)
    k1, k2 = dns.name.from_text("k1."), dns.name.from_text("k2.")
    assert config.keys[k1].secret == b"secret"
    assert config.keys[k1].algorithm == dns.name.from_text("hmac-md5.sig-alg.reg.int.")
    assert config.keys[k2].algorithm == dns.name.from_text("hmac-sha512.")
    acl = config.zones[0].update_acl
    assert acl.policy is not None and len(acl.policy) == 2 and acl.allow is None


def test_demo_config_allows_the_demo_key() -> None:
    config = load_config(ROOT / "conf" / "xdnsd.toml")
    assert config.zones[0].update_acl.enabled
    assert config.zones[0].transfer_acl.allow is not None  # transfers from loopback
    assert dns.name.from_text("demo-key.") in config.keys


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[keys.k1]\nalgorithm = "hmac-sha3"\nsecret = "c2VjcmV0"\n', r"not supported"),
        ('[keys.k1]\nsecret = "not base64!"\n', r"\[keys.k1\].secret: not valid base64"),
        ("[keys.k1]\nalgorithm = 'hmac-sha256'\n", r"exactly one of 'secret' and 'file'"),
        ('[keys.k1]\nfile = "missing.key"\n', r"\[keys.k1\].file: cannot read"),
        ('[keys.k1]\nsecret = "c2VjcmV0"\nsecrte = "x"\n', r"unknown key 'secrte'"),
        (_zone('update_policy = ["grant nokey zonesub ANY"]'), r"no key named nokey."),
        (_zone('update_policy = ["grant k zonesub BOGUS"]'), r"update_policy\[0\]: .*BOGUS"),
        (_zone('allow_update = ["key nokey"]'), r"allow_update\[0\]: .*no key named"),
        (_zone('allow_transfer = ["300.1.1.1"]'), r"allow_transfer\[0\]: .*not an address"),
        (_zone('secondaries = ["ns2.example:53"]'), r"secondaries\[0\]: .*not an IP address"),
        (_zone('notify_key = "nokey"'), r"notify_key: no key named 'nokey'"),
        (
            _zone('allow_update = ["127.0.0.1"]\nupdate_policy = []'),
            r"either 'update_policy' or 'allow_update'",
        ),
    ],
)
def test_key_and_policy_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(err.value).startswith(str(path))


def test_key_file_without_the_key(tmp_path: Path) -> None:
    (tmp_path / "k.key").write_text('key "other" { algorithm hmac-sha256; secret "c2VjcmV0"; };\n')
    path = tmp_path / "x.toml"
    path.write_text('[keys.k1]\nfile = "k.key"\n')
    with pytest.raises(ConfigError, match=r"has no key named k1. \(keys found: other\)"):
        load_config(path)


def test_secondary_zone(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(
        '[keys.k]\nsecret = "c2VjcmV0"\n'
        '[[zones]]\nname = "s.test"\nprimaries = ["192.0.2.1", "[2001:db8::1]:5300"]\n'
        'primary_key = "k"\njournal_depth = 20\n'
    )
    (zone,) = load_config(path).zones
    assert zone.kind == "secondary" and zone.journal_depth == 20
    assert [str(p) for p in zone.primaries] == ["192.0.2.1:53", "[2001:db8::1]:5300"]
    assert zone.primary_key is not None and zone.primary_key.name == dns.name.from_text("k")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('primaries = ["192.0.2.1"]\nfile = "z"', r"#1.file: zone s.test. is a secondary"),
        ('primaries = ["192.0.2.1"]\nallow_update = ["any"]', r"#1.allow_update: .*secondary"),
        ('primaries = ["nowhere"]', r"#1.primaries\[0\]: .*not an IP address"),
        ('primaries = ["192.0.2.1"]\nprimary_key = "nokey"', r"primary_key: no key named"),
        ('primary_key = "k"', r"primary_key: set without 'primaries'"),
        ("journal_depth = 0", r"#1.journal_depth: must be at least 1"),
    ],
)
def test_secondary_zone_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[keys.k]\nsecret = "c2VjcmV0"\n[[zones]]\nname = "s.test"\n{text}\n')
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


PEER_KEY = "cGVlciBrZXkgb2YgdGhpcnR5LXR3byBieXRlcywgb2s="


def test_peers(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(
        '[node]\nid = "ns1"\npeer_listen = "127.0.0.1:5400"\n'
        f'[[peers]]\nid = "ns2"\naddress = "127.0.0.1:5401"\nkey = "{PEER_KEY}"\n'
        f'[[peers]]\nid = "ns3"\naddress = "[::1]:5402"\nkey = "{PEER_KEY}"\n'
    )
    config = load_config(path)
    assert str(config.node.peer_listen) == "127.0.0.1:5400"
    assert [(p.id, str(p.address)) for p in config.peers] == [
        ("ns2", "127.0.0.1:5401"),
        ("ns3", "[::1]:5402"),
    ]
    assert PEER_KEY not in repr(config.peers)  # the key is not printed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f'id = "ns1"\naddress = "127.0.0.1:1"\nkey = "{PEER_KEY}"', r"#1.id: 'ns1' is this node"),
        ('id = "ns2"\naddress = "127.0.0.1:1"\nkey = "c2hvcnQ="', r"#1.key: 5 bytes; use at least"),
        ('id = "ns2"\naddress = "127.0.0.1:1"\nkey = "%%%"', r"#1.key: not valid base64"),
        (f'id = "ns2"\naddress = "here"\nkey = "{PEER_KEY}"', r"#1.address: .*not an IP"),
        (f'id = "n s"\naddress = "127.0.0.1:1"\nkey = "{PEER_KEY}"', r"#1.id: 'n s' must be"),
        ('id = "ns2"\naddress = "127.0.0.1:1"', r"#1: missing required key 'key'"),
    ],
)
def test_peer_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[node]\nid = "ns1"\n[[peers]]\n{text}\n')
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tombstone_retention = 0", r"\[node\].tombstone_retention: must be positive"),
        ('tombstone_retention = "1d"', r"\[node\].tombstone_retention: expected"),
        ("anti_entropy_interval = -1", r"\[node\].anti_entropy_interval: must be positive"),
    ],
)
def test_replication_timing_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[node]\nid = "ns1"\n{text}\n')
    with pytest.raises(ConfigError, match=message) as err:
        load_config(path)
    assert str(path) in str(err.value)


def test_replication_timing(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('[node]\nid = "ns1"\ntombstone_retention = 3600\nanti_entropy_interval = 0.5\n')
    node = load_config(path).node
    assert (node.tombstone_retention, node.anti_entropy_interval) == (3600.0, 0.5)
    path.write_text('[node]\nid = "ns1"\n')
    node = load_config(path).node
    assert (node.tombstone_retention, node.anti_entropy_interval) == (7 * 86400.0, 30.0)


def test_conflicts_policy(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text('[[zones]]\nname = "a.test"\nconflicts = "last-writer-wins"\n')
    assert load_config(path).zones[0].conflicts == "last-writer-wins"
    path.write_text('[[zones]]\nname = "a.test"\nconflicts = "newest"\n')
    with pytest.raises(ConfigError, match=r"#1.conflicts: 'newest': use 'alert' or"):
        load_config(path)


def test_demo_cluster_configs() -> None:
    configs = [load_config(ROOT / "conf" / "cluster" / f"ns{i}.toml") for i in (1, 2, 3)]
    ids = [c.node.id for c in configs]
    assert ids == ["ns1", "ns2", "ns3"]
    for config in configs:
        assert {p.id for p in config.peers} == set(ids) - {config.node.id}
        assert config.node.peer_listen is not None
        for peer in config.peers:
            other = configs[ids.index(peer.id)]
            assert peer.address == other.node.peer_listen  # each dials the other's listener
            assert peer.key == next(p.key for p in other.peers if p.id == config.node.id)
