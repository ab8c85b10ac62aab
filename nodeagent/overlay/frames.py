"""VXLAN frames as the overlay driver puts them on UDP 4789: pure encoding and decoding.

A datagram from one task to another on another node travels as (RFC 7348):

    VXLAN header (8 bytes): flags 0x08 (the VNI is valid), 3 reserved bytes, the 24-bit VNI,
                            1 reserved byte; every reserved byte zero
    inner Ethernet II (14): destination MAC, source MAC, EtherType 0x0800
    inner IPv4 (20):        version 4, IHL 5, TTL 64, protocol 17, the overlay addresses, checksum
    inner UDP (8):          ports, length, checksum over the IPv4 pseudo-header
    payload

MACs are derived from the overlay addresses as Docker does: 02:42 followed by the four bytes of the
IPv4 address (10.0.1.3 -> 02:42:0a:00:01:03). A capture on UDP 4789 decodes as VXLAN in Wireshark
and tshark.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "VXLAN_PORT",
    "Datagram",
    "FrameError",
    "decode_frame",
    "decode_vxlan",
    "encode_frame",
    "encode_vxlan",
    "internet_checksum",
    "mac_for",
]

VXLAN_PORT = 4789
"""The IANA port of VXLAN, Docker's default data path port."""

_FLAG_VNI = 0x08
_ETH_IPV4 = 0x0800
_PROTO_UDP = 17
_TTL = 64
MAX_VNI = (1 << 24) - 1


class FrameError(ValueError):
    """A frame that is not a well-formed VXLAN-encapsulated IPv4/UDP datagram."""


@dataclass(frozen=True)
class Datagram:
    """One UDP datagram between two overlay addresses on one VXLAN network."""

    vni: int
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def internet_checksum(data: bytes) -> int:
    """RFC 1071: the ones' complement of the ones' complement sum of 16-bit words."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_for(addr: str) -> bytes:
    """Docker's MAC for an IPv4 address: 02:42 and the address's four bytes."""
    return b"\x02\x42" + ipaddress.IPv4Address(addr).packed


def encode_vxlan(vni: int, inner: bytes) -> bytes:
    """The 8-byte VXLAN header for ``vni``, then ``inner``."""
    if not 0 <= vni <= MAX_VNI:
        raise FrameError(f"VNI {vni} is out of range 0..{MAX_VNI}")
    return struct.pack("!B3xI", _FLAG_VNI, vni << 8) + inner


def decode_vxlan(frame: bytes) -> tuple[int, bytes]:
    """(VNI, inner frame); FrameError unless the I flag is set and reserved bits are zero."""
    if len(frame) < 8:
        raise FrameError(f"VXLAN header needs 8 bytes, got {len(frame)}")
    flags, reserved, word = frame[0], frame[1:4], struct.unpack("!I", frame[4:8])[0]
    if flags != _FLAG_VNI:
        raise FrameError(f"VXLAN flags are {flags:#04x}, expected 0x08")
    if reserved != b"\0\0\0" or word & 0xFF:
        raise FrameError("VXLAN reserved bits are not zero")
    return word >> 8, frame[8:]


def encode_frame(d: Datagram) -> bytes:
    """The whole VXLAN frame for one datagram (what goes in the outer UDP payload)."""
    for port in (d.sport, d.dport):
        if not 0 <= port <= 0xFFFF:
            raise FrameError(f"port {port} is out of range")
    src = ipaddress.IPv4Address(d.src).packed
    dst = ipaddress.IPv4Address(d.dst).packed
    udp_len = 8 + len(d.payload)
    total = 20 + udp_len
    if total > 0xFFFF:
        raise FrameError(f"datagram of {len(d.payload)} bytes is too big for IPv4")
    pseudo = src + dst + struct.pack("!BBH", 0, _PROTO_UDP, udp_len)
    udp = struct.pack("!HHHH", d.sport, d.dport, udp_len, 0) + d.payload
    udp_sum = internet_checksum(pseudo + udp) or 0xFFFF  # 0 means "no checksum" in UDP over IPv4
    udp = udp[:6] + struct.pack("!H", udp_sum) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, _TTL, _PROTO_UDP, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", internet_checksum(ip)) + ip[12:]
    eth = mac_for(d.dst) + mac_for(d.src) + struct.pack("!H", _ETH_IPV4)
    return encode_vxlan(d.vni, eth + ip + udp)


def decode_frame(frame: bytes) -> Datagram:
    """Parse a VXLAN frame back into a Datagram, checking both checksums (FrameError if wrong)."""
    vni, inner = decode_vxlan(frame)
    if len(inner) < 14 + 20 + 8:
        raise FrameError("inner frame too short")
    if struct.unpack("!H", inner[12:14])[0] != _ETH_IPV4:
        raise FrameError("inner frame is not IPv4")
    ip = inner[14:34]
    if ip[0] != 0x45 or ip[9] != _PROTO_UDP:
        raise FrameError("inner packet is not plain IPv4/UDP")
    if internet_checksum(ip) != 0:
        raise FrameError("inner IPv4 checksum is wrong")
    total = struct.unpack("!H", ip[2:4])[0]
    src, dst = ip[12:16], ip[16:20]
    udp = inner[34:14 + total]
    if len(udp) < 8:
        raise FrameError("inner UDP header truncated")
    sport, dport, length, checksum = struct.unpack("!HHHH", udp[:8])
    if length != len(udp):
        raise FrameError("inner UDP length disagrees with the IPv4 length")
    if checksum and internet_checksum(src + dst + struct.pack("!BBH", 0, _PROTO_UDP, length) + udp) != 0:
        raise FrameError("inner UDP checksum is wrong")
    return Datagram(vni, str(ipaddress.IPv4Address(src)), sport, str(ipaddress.IPv4Address(dst)), dport,
                    bytes(udp[8:]))  # fmt: skip
