"""VXLAN frames: the RFC 7348 header, the inner Ethernet/IPv4/UDP frame and its checksums.

The frame is decoded here by a parser written for this test alone (struct offsets from the RFCs),
so that a mistake shared by encoder and decoder cannot pass.
"""

from __future__ import annotations

import struct

import pytest

from nodeagent.overlay.frames import (
    Datagram,
    FrameError,
    decode_frame,
    decode_vxlan,
    encode_frame,
    encode_vxlan,
    internet_checksum,
    mac_for,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("vni", "header"), [
    (0, "0800000000000000"),
    (4096, "0800000000100000"),
    (4097, "0800000000100100"),
    (0xABCDEF, "08000000abcdef00"),
    ((1 << 24) - 1, "08000000ffffff00"),
])  # fmt: skip
def test_the_vxlan_header_is_flags_0x08_the_vni_and_zero_reserved_bytes(vni: int, header: str) -> None:
    frame = encode_vxlan(vni, b"inner")
    assert frame[:8].hex() == header
    assert decode_vxlan(frame) == (vni, b"inner")


@pytest.mark.parametrize(("raw", "why"), [
    ("0000000000100000", "flags"),           # I flag clear
    ("0c00000000100000", "flags"),           # another flag set
    ("0801000000100000", "reserved"),        # reserved byte after the flags
    ("0800000000100001", "reserved"),        # reserved byte after the VNI
    ("08000000", "8 bytes"),                 # truncated
])  # fmt: skip
def test_malformed_vxlan_headers_are_refused(raw: str, why: str) -> None:
    with pytest.raises(FrameError, match=why):
        decode_vxlan(bytes.fromhex(raw))


@pytest.mark.parametrize("vni", [-1, 1 << 24])
def test_a_vni_out_of_range_is_refused(vni: int) -> None:
    with pytest.raises(FrameError):
        encode_vxlan(vni, b"")


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _independent_parse(frame: bytes) -> dict[str, object]:
    """Parse a VXLAN frame from the RFCs' offsets, verifying sums by adding words (RFC 1071)."""
    out: dict[str, object] = {"flags": frame[0], "vni": int.from_bytes(frame[4:7], "big"),
                              "reserved": frame[1:4] + frame[7:8]}  # fmt: skip
    eth = frame[8:22]
    out["dst_mac"] = ":".join(f"{b:02x}" for b in eth[0:6])
    out["src_mac"] = ":".join(f"{b:02x}" for b in eth[6:12])
    out["ethertype"] = int.from_bytes(eth[12:14], "big")
    ip = frame[22:42]
    out["ip_version"], out["ihl"] = ip[0] >> 4, ip[0] & 0xF
    out["ip_total"] = int.from_bytes(ip[2:4], "big")
    out["ttl"], out["proto"] = ip[8], ip[9]
    out["src"] = ".".join(str(b) for b in ip[12:16])
    out["dst"] = ".".join(str(b) for b in ip[16:20])
    words = sum(int.from_bytes(ip[i:i + 2], "big") for i in range(0, 20, 2))
    out["ip_sum_ok"] = _fold(words) == 0xFFFF
    udp = frame[42:]
    out["sport"], out["dport"] = int.from_bytes(udp[0:2], "big"), int.from_bytes(udp[2:4], "big")
    out["udp_len"] = int.from_bytes(udp[4:6], "big")
    pseudo = ip[12:20] + b"\x00\x11" + udp[4:6]
    data = pseudo + udp + (b"\0" if len(udp) % 2 else b"")
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    out["udp_sum_ok"] = _fold(total) == 0xFFFF
    out["payload"] = udp[8:]
    return out


@pytest.mark.parametrize("payload", [b"", b"hello", b"odd length!", bytes(range(256)) * 4])
def test_an_encoded_datagram_decodes_with_an_independent_parser(payload: bytes) -> None:
    d = Datagram(4097, "10.0.1.3", 40000, "10.0.1.4", 53, payload)
    frame = encode_frame(d)
    got = _independent_parse(frame)
    assert got["flags"] == 0x08 and got["vni"] == 4097 and got["reserved"] == b"\0\0\0\0"
    assert got["dst_mac"] == "02:42:0a:00:01:04" and got["src_mac"] == "02:42:0a:00:01:03"
    assert got["ethertype"] == 0x0800
    assert (got["ip_version"], got["ihl"], got["ttl"], got["proto"]) == (4, 5, 64, 17)
    assert got["ip_total"] == 20 + 8 + len(payload)
    assert (got["src"], got["dst"], got["sport"], got["dport"]) == ("10.0.1.3", "10.0.1.4", 40000, 53)
    assert got["udp_len"] == 8 + len(payload)
    assert got["ip_sum_ok"] and got["udp_sum_ok"]
    assert got["payload"] == payload
    assert decode_frame(frame) == d


def test_the_checksum_matches_rfc_1071s_example_and_a_known_ipv4_header() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (one's complement 220d).
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D
    # The IPv4 header of Wikipedia's worked example: checksum b861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861


def test_a_corrupted_inner_frame_is_refused() -> None:
    frame = bytearray(encode_frame(Datagram(4097, "10.0.1.3", 1, "10.0.1.4", 2, b"data")))
    bad_ip = bytearray(frame)
    bad_ip[22 + 8] ^= 0x01  # TTL
    with pytest.raises(FrameError, match="IPv4 checksum"):
        decode_frame(bytes(bad_ip))
    bad_udp = bytearray(frame)
    bad_udp[-1] ^= 0xFF
    with pytest.raises(FrameError, match="UDP checksum"):
        decode_frame(bytes(bad_udp))


def test_macs_are_dockers_02_42_and_the_address() -> None:
    assert mac_for("10.0.0.2") == bytes.fromhex("02420a000002")
    assert struct.unpack("!6B", mac_for("192.168.1.200"))[2:] == (192, 168, 1, 200)
