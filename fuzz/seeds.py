#!/usr/bin/env python3
"""Writes the hand-made seed corpora under fuzz/corpus/<target>/.

Each seed is one meaningful case (a masked text frame, a fragmented message, a close frame, an
oversize header...), built here from readable parts rather than pasted as hex. The input layouts
are documented at the top of each fuzz target and in fuzz/src/lib.rs. Re-run after changing a
layout:  python3 fuzz/seeds.py   (it rewrites every seed and removes none of the others).
"""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # the RFC 6455 section 5.7 example key


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- WebSocket frames --------------------------------------------------------------------------

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(opcode, payload=b"", fin=True, mask=MASK, rsv=0, length=None):
    """One frame; `mask=None` for server frames, `length` to lie about the payload length."""
    n = len(payload) if length is None else length
    out = bytearray([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if mask is not None else 0
    if n <= 125:
        out.append(bit | n)
    elif n <= 0xFFFF:
        out += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        out += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask is not None:
        out += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(out + payload)


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


def chunked(stream, sizes=(), limit=0, flag=False):
    """The chunked stream format: control byte, chunk sizes (b + 1 each), stream."""
    assert len(sizes) <= 15 and 0 <= limit <= 3
    control = len(sizes) | limit << 4 | (0x40 if flag else 0)
    return bytes([control]) + bytes(s - 1 for s in sizes) + stream


# ws_decoder: limits 1024 / 0 / 7 / 130; flag = client role.
WS_1024, WS_0, WS_7, WS_130 = 0, 1, 2, 3
ws = {
    # RFC 6455 5.7: a single-frame masked text message "Hello", fed one byte per read.
    "masked_text_hello": chunked(frame(TEXT, b"Hello")),
    # Fragmented text with a ping between the fragments, a 4-byte character split across them.
    "fragmented_text_with_ping": chunked(
        frame(TEXT, b"Hel", fin=False)
        + frame(PING, b"are you there")
        + frame(CONT, "lo w\u00f6rld \U0001F600".encode()[:12], fin=False)
        + frame(CONT, "lo w\u00f6rld \U0001F600".encode()[12:]),
        sizes=[3, 10],
    ),
    "close_1000_bye": chunked(frame(CLOSE, close_payload(1000, b"bye")), sizes=[256]),
    "close_empty_then_garbage": chunked(frame(CLOSE) + b"\xff\xff\xff garbage after close"),
    "close_bad_code_1005": chunked(frame(CLOSE, close_payload(1005)), sizes=[256]),
    "close_one_byte": chunked(frame(CLOSE, b"\x03"), sizes=[256]),
    "close_reason_bad_utf8": chunked(frame(CLOSE, close_payload(1000, b"\xc0\x80")), sizes=[256]),
    "ping_pong": chunked(frame(PING, b"ping data") + frame(PONG, b"pong data"), sizes=[5, 1]),
    "binary_16bit_length": chunked(frame(BINARY, bytes(range(200))), sizes=[2, 100]),
    # 64-bit length of 2^32 (over every limit: 1009 from the header alone).
    "oversize_64bit_header": chunked(frame(BINARY, b"", length=1 << 32), sizes=[256]),
    "length_msb_set": chunked(frame(BINARY, b"", length=1 << 63), sizes=[256]),
    "limit7_exact_then_over": chunked(frame(TEXT, b"1234567") + frame(BINARY, b"12345678"), limit=WS_7),
    "limit7_fragments_over": chunked(
        frame(BINARY, b"1234", fin=False) + frame(CONT, b"5678"), sizes=[1, 2, 3], limit=WS_7
    ),
    "limit0_empty_messages": chunked(frame(TEXT) + frame(BINARY) + frame(PING, b"x"), limit=WS_0),
    "limit130_16bit_boundary": chunked(frame(BINARY, b"a" * 126) + frame(BINARY, b"b" * 131), sizes=[200], limit=WS_130),
    "unmasked_client_frame": chunked(frame(TEXT, b"hi", mask=None), sizes=[256]),
    "reserved_opcode_3": chunked(frame(0x3, b""), sizes=[256]),
    "rsv1_without_extension": chunked(frame(TEXT, b"x", rsv=0x40), sizes=[256]),
    "fragmented_ping": chunked(frame(PING, b"p", fin=False), sizes=[256]),
    "control_126_bytes": chunked(frame(PING, b"p" * 126), sizes=[256]),
    "continuation_without_start": chunked(frame(CONT, b"x"), sizes=[256]),
    "text_during_fragmented": chunked(frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), sizes=[256]),
    "invalid_utf8_across_fragments": chunked(
        frame(TEXT, b"a\xed", fin=False) + frame(CONT, b"\xa0\x80"), sizes=[7]
    ),
    "truncated_utf8_at_end": chunked(frame(TEXT, "\U0001F600".encode()[:3])),
    "empty_fragment_flood": chunked(
        frame(BINARY, b"", fin=False) + frame(CONT, b"", fin=False) * 20 + frame(CONT, b"end"),
        sizes=[16],
    ),
    "close_during_fragmented": chunked(frame(TEXT, b"partial", fin=False) + frame(CLOSE) + frame(CONT, b"x")),
    # Client role (flag): unmasked server frames, then a masked one (error).
    "client_role_server_frames": chunked(
        frame(TEXT, b"hi", mask=None) + frame(PING, b"", mask=None) + frame(CLOSE, close_payload(1001, b"going away"), mask=None),
        sizes=[4],
        flag=True,
    ),
    "client_role_masked_frame": chunked(frame(TEXT, b"hi"), sizes=[256], flag=True),
}
for name, data in ws.items():
    write("ws_decoder", name, data)

# ---- ws_roundtrip (layout in fuzz_targets/ws_roundtrip.rs) -------------------------------------


def rt_header(max_size, masks=(MASK,), chunks=(), server_to_client=False):
    out = bytes([1 if server_to_client else 0]) + struct.pack("<I", max_size)
    out += bytes([len(masks)]) + b"".join(masks)
    out += bytes([len(chunks)]) + b"".join(struct.pack("<H", c - 1) for c in chunks)
    return out


def rt_control(pong, payload):
    return bytes([1, 1 if pong else 0, len(payload)]) + payload


def rt_message(payload, text=True, big=False, fragments=(), controls=()):
    kind = (1 if text else 0) | (2 if big else 0)
    out = bytes([0, kind]) + struct.pack("<H", len(payload)) + payload
    out += bytes([len(fragments)]) + bytes(fragments)
    out += bytes([len(controls)])
    for pong, p in controls:
        out += bytes([1 if pong else 0, len(p)]) + p
    return out


def rt_close(code=None, reason=b"", trailing=b""):
    if code is None:
        return bytes([2, 1]) + trailing
    return bytes([2, 2]) + struct.pack(">H", code) + bytes([len(reason)]) + reason + trailing


rt = {
    "text_hello": rt_header(1024) + rt_message(b"Hello"),
    "fragmented_text_emoji_with_ping": rt_header(1024, chunks=[1, 3])
    + rt_message("a\U0001F600b".encode(), fragments=[2, 2], controls=[(False, b"p")]),
    "binary_300_fragmented_with_pong": rt_header(4096, masks=(MASK, b"\x00\x00\x00\x00"), chunks=[64, 7])
    + rt_message(bytes(range(256)) + bytes(44), text=False, fragments=[0, 100], controls=[(True, b"pong"), (False, b"")]),
    "big_64bit_length": rt_header(1 << 17, chunks=[4096]) + rt_message(b"0123456789abcdef", text=False, big=True),
    "over_limit_on_second_fragment": rt_header(10) + rt_message(b"hello world", fragments=[6]),
    "pings_then_close_with_trailing": rt_header(1024, chunks=[2])
    + rt_control(False, b"1")
    + rt_control(True, b"2")
    + rt_close(1000, b"bye", trailing=b"\x81\x05ignored"),
    # Three fragments of "abc": 3 payload bytes + 2 x FRAGMENT_OVERHEAD (16) = 35 exactly fits,
    # one byte less of limit is 1009 on the last fragment's header.
    "fragment_overhead_at_limit": rt_header(35, chunks=[1]) + rt_message(b"abc", text=False, fragments=[1, 1]),
    "fragment_overhead_over_limit": rt_header(34) + rt_message(b"abc", text=False, fragments=[1, 1]),
    "close_invalid_code_1005": rt_header(1024) + rt_close(1005),
    "server_to_client_text_and_close": rt_header(1024, masks=(), server_to_client=True)
    + rt_message("gr\u00fc\u00df dich".encode())
    + rt_close(),
    "empty_messages_limit_0": rt_header(0) + rt_message(b"") + rt_message(b"", text=False, fragments=[0, 0]),
}
for name, data in rt.items():
    write("ws_roundtrip", name, data)

# ---- TCP framings ------------------------------------------------------------------------------

# tcp_lines: limits 16 / 0 / 1 / 1024.
lines = {
    "classic_crlf": chunked(b"Ho\r\nfirst blood\r\n"),
    "bare_lf_and_cr_inside": chunked(b"one\ntw\ro\r\nthree\r\r\n", sizes=[2, 5]),
    "empty_lines": chunked(b"\n\r\n\n", sizes=[1]),
    "exactly_16_then_17": chunked(b"0123456789abcdef\r\n0123456789abcdefg\n", sizes=[10]),
    "no_delimiter_ever": chunked(b"x" * 40, sizes=[8]),
    "utf8_and_binary": chunked("gr\u00fc\u00df\n".encode() + b"\xff\xfe\x00\n", sizes=[3]),
    "limit0": chunked(b"\n\r\na\n", limit=1),
    "limit1_cr_slack": chunked(b"a\r", limit=2),
    "limit1024_long_line": chunked(b"L" * 1000 + b"\r\n" + b"tail", sizes=[200, 17], limit=3),
}
for name, data in lines.items():
    write("tcp_lines", name, data)

# tcp_length_prefixed: limits 16 / 0 / 255 / 1 MiB.


def lp(payload, length=None):
    return struct.pack(">I", len(payload) if length is None else length) + payload


length_prefixed = {
    "two_frames_byte_by_byte": chunked(lp(b"abc") + lp(b"")),
    "max_u32_length": chunked(lp(b"", length=0xFFFFFFFF), sizes=[256]),
    "exactly_16_then_17": chunked(lp(b"0123456789abcdef") + lp(b"", length=17), sizes=[3, 9]),
    "truncated_frame": chunked(lp(b"half", length=8), sizes=[256]),
    "limit0_empty_frames": chunked(lp(b"") * 3 + lp(b"x"), limit=1),
    "limit255": chunked(lp(bytes(range(255))) + lp(b"", length=256), sizes=[100, 7], limit=2),
    "limit1m_chunked": chunked(lp(b"z" * 300) + lp(b"next"), sizes=[100, 7], limit=3),
}
for name, data in length_prefixed.items():
    write("tcp_length_prefixed", name, data)

# ---- small parsers -----------------------------------------------------------------------------

close = {
    "normal_bye": struct.pack(">H", 1000) + b"\x00bye",
    "kicked_long_ascii": struct.pack(">H", 4010) + b"\x01" + b"a" * 200,
    "reason_multibyte_at_cut": struct.pack(">H", 1001) + b"\x00" + "\u00e9".encode() * 100,
    "invalid_code_1005": struct.pack(">H", 1005) + b"\x00",
    "reserved_code_0": b"\x00\x00\x01x",
}
for name, data in close.items():
    write("close_frame", name, data)

names = {
    "lobby": b"lobby",
    "dotted": b"news.sports/eu:1",
    "space": b"has space",
    "tab": b"tab\there",
    "nel": "a\u0085b".encode(),
    "max_164": b"a" * 164,
    "over_165": b"a" * 165,
    "multibyte": "\u00e9\u00e8\u4e2d\u6587".encode(),
    "not_utf8": b"\xff\xfelobby",
    "protocol_json": b"json",
    "framing": b"length-prefixed",
}
for name, data in names.items():
    write("channel_name", name, data)

durations = {
    "ms": b"250ms",
    "s": b"10s",
    "m": b"2m",
    "compound": b"1h 30m",
    "bare": b"3",
    "fraction": b" 0.5 ",
    "word": b"soon",
    "negative": b"-1",
    "inf": b"inf",
}
for name, data in durations.items():
    write("parse_duration", name, data)

configs = {
    "empty": b"{}",
    "limits": b'{"max_connections": 5, "max_message_size": 1024, "idle_timeout": "2m", "handshake_timeout": 10}',
    "overflow": b'{"outbox_overflow": "drop-oldest", "ping_interval": 0.5}',
    "tcp": b'{"framing": "length-prefixed", "protocol": "json", "channels": ["a", "b"]}',
    "ws": b'{"path": "/ws", "channels": []}',
    "unknown_key": b'{"max_conections": 5}',
}
for name, data in configs.items():
    write("config", name, data)

# ---- permessage-deflate ------------------------------------------------------------------------
import zlib  # noqa: E402


def deflate_messages(messages, wbits=15):
    """Client-style compression with context takeover: one raw DEFLATE stream, a sync flush
    per message, the 00 00 ff ff tail stripped (RFC 7692 7.2.1)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = []
    for m in messages:
        data = c.compress(m) + c.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(b"\x00\x00\xff\xff")
        out.append(data[:-4])
    return out


def inflate_input(messages, no_context_takeover=False, limit=0, window=6):
    """ws_inflate layout: control byte, then length-prefixed (u8) messages."""
    control = (1 if no_context_takeover else 0) | limit << 1 | window << 3
    out = bytes([control])
    for m in messages:
        assert len(m) <= 255
        out += bytes([len(m)]) + m
    return out


INF_1024, INF_16, INF_0, INF_64K = 0, 1, 2, 3
hello = deflate_messages([b"Hello"])[0]
two = deflate_messages([b"the same words again and again", b"the same words again and again!"])
bomb = deflate_messages([bytes(65536)])[0]
final_block = zlib.compressobj(6, zlib.DEFLATED, -15)
final_block = final_block.compress(b"final") + final_block.flush(zlib.Z_FINISH)
inflate = {
    "hello": inflate_input([hello, b"\x00"]),
    "context_takeover_two_messages": inflate_input(two),
    "no_context_takeover": inflate_input([hello, hello], no_context_takeover=True),
    "bomb_64k_zeros_limit_1024": inflate_input([bomb, b"\x00"]),
    "bomb_64k_zeros_limit_64k": inflate_input([bomb, b"\x00"], limit=INF_64K),
    # A stored (uncompressed) block: BFINAL=0, BTYPE=00, LEN=3, NLEN=~3, "abc".
    "stored_block": inflate_input([b"\x00\x03\x00\xfc\xffabc", b"\x00"]),
    "bfinal_block_then_more": inflate_input([final_block, hello, b"\x00"]),
    "corrupt": inflate_input([b"\xff\xff\xff\xff", b"\x00"]),
    "window_9": inflate_input([b"compressible compressible compressible", b"\x00"], window=0),
}
for name, data in inflate.items():
    write("ws_inflate", name, data)

negotiate = {
    "plain": b"\x01permessage-deflate",
    "disabled": b"\x00permessage-deflate",
    "client_max_window_bits": b"\x01permessage-deflate; client_max_window_bits",
    "all_params": b"\x01permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12",
    "quoted_value": b'\x01permessage-deflate; client_max_window_bits="10"',
    "fallback_offers": b"\x01x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=9",
    "duplicate_param": b"\x01permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "two_headers_strict": b"\x03permessage-deflate; bogus\npermessage-deflate",
}
for name, data in negotiate.items():
    write("ws_negotiate", name, data)

# ws_decoder with permessage-deflate negotiated (control bit 7).
RSV1 = 0x40
ws_deflate = {
    "deflate_compressed_text": chunked(frame(TEXT, hello, rsv=RSV1), sizes=[3]) ,
    "deflate_compressed_fragmented": chunked(
        frame(BINARY, two[0][:5], fin=False, rsv=RSV1) + frame(CONT, two[0][5:]) + frame(TEXT, b"plain"),
        sizes=[4, 9],
    ),
    "deflate_rsv1_on_continuation": chunked(frame(TEXT, b"a", fin=False) + frame(CONT, b"b", rsv=RSV1), sizes=[256]),
    "deflate_rsv1_on_ping": chunked(frame(PING, b"p", rsv=RSV1), sizes=[256]),
}
for name, data in ws_deflate.items():
    write("ws_decoder", name, bytes([data[0] | 0x80]) + data[1:])
