"""xdnsd: a multi-master authoritative DNS server."""

__version__ = "0.1.0"
