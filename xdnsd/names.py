"""DNS names as ordered LMDB keys.

A name's key is its labels in reverse order (root side first), each lowercased (ASCII only,
as DNS compares names) and followed by a 0x00 terminator.  Bytes 0x00 and 0x01 inside a label
are escaped as 0x01 0x01 and 0x01 0x02, so a terminator never appears inside a label and byte
order of keys equals the canonical DNS name order of RFC 4034 section 6.1.  The store relies on:

* every name below N has N's key as a prefix (a subtree is one prefix scan);
* a key never contains an empty label, so after N's key the next byte is 0x00 only for data owned
  by N itself (see ``store``), and >= 0x01 for a descendant.
"""

from __future__ import annotations

import dns.name

_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")


def _escape_label(label: bytes) -> bytes:
    label = label.translate(_LOWER)
    if b"\x00" in label or b"\x01" in label:
        label = label.replace(b"\x01", b"\x01\x02").replace(b"\x00", b"\x01\x01")
    return label + b"\x00"


def labels_key(labels: tuple[bytes, ...]) -> bytes:
    """Key of labels given leaf first (as in ``dns.name.Name.labels``), root label excluded."""
    return b"".join(_escape_label(label) for label in reversed(labels))


def name_key(name: dns.name.Name) -> bytes:
    """Key of an absolute name (the root is the empty key)."""
    labels = name.labels
    if labels and labels[-1] == b"":
        labels = labels[:-1]
    return labels_key(labels)


def relative_key(name: dns.name.Name, origin: dns.name.Name) -> bytes:
    """Key of ``name`` relative to ``origin`` (``name`` must be at or below ``origin``)."""
    depth = len(name.labels) - len(origin.labels)
    if depth < 0:
        raise ValueError(f"{name} is not at or below {origin}")
    return labels_key(name.labels[:depth])


def key_labels(key: bytes) -> tuple[bytes, ...]:
    """Inverse of :func:`labels_key`: the labels leaf first (lowercased)."""
    out: list[bytes] = []
    i = 0
    n = len(key)
    current = bytearray()
    while i < n:
        b = key[i]
        if b == 0:
            out.append(bytes(current))
            current = bytearray()
        elif b == 1:
            i += 1
            current.append(0 if key[i] == 1 else 1)
        else:
            current.append(b)
        i += 1
    out.reverse()
    return tuple(out)


def key_name(key: bytes, origin: dns.name.Name = dns.name.root) -> dns.name.Name:
    """Name for a key relative to ``origin`` (absolute when origin is the root)."""
    return dns.name.Name(key_labels(key) + origin.labels)


def wire_name_end(wire: bytes, offset: int) -> int:
    """Offset just past the (possibly compressed) name at ``offset`` in a DNS message.

    Raises IndexError for a truncated name or a reserved label type.
    """
    while True:
        length = wire[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            if offset + 1 >= len(wire):
                raise IndexError("truncated compression pointer")
            return offset + 2
        if length & 0xC0:
            raise IndexError("reserved label type")
        offset += length + 1
