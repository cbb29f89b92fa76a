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

# ---- json protocol commands --------------------------------------------------------------------
json_commands = {
    "subscribe": b'{"type":"subscribe","channel":"news"}',
    "unsubscribe": b'{"type":"unsubscribe","channel":"news"}',
    "publish_text": b'{"type":"publish","channel":"news","data":"hello \\u00e9\\n"}',
    "publish_base64": b'{"type":"publish","channel":"news","data_base64":"AAEC"}',
    "publish_both": b'{"type":"publish","channel":"news","data":"a","data_base64":"AA=="}',
    "publish_null_data": b'{"channel":"news","data":null,"type":"publish"}',
    "ping_id_object": b'{"type":"ping","id":{"n":[1,2.5,-3,true,null]}}',
    "ping_no_id": b'{"type":"ping"}',
    "unknown_type": b'{"type":"fly"}',
    "unknown_field": b'{"type":"subscribe","channel":"a","x":1}',
    "duplicate_field": b'{"type":"subscribe","channel":"a","channel":"b"}',
    "channel_not_string": b'{"type":"subscribe","channel":7}',
    "trailing_garbage": b'{"type":"ping"} x',
    "big_number_id": b'{"type":"ping","id":123456789012345678901234567890}',
    "not_json": b"hello",
}
for name, data in json_commands.items():
    write("json_command", name, data)

# ---- WebSocket upgrade requests: method, query ("-" for none), header lines ---------------------
# http_publish: one byte of size limit (x4 bytes), then a POST /api/publish body.
http_publish = {
    "text": b"\x40" + b'{"channel":"lobby","data":"hello"}',
    "binary_to_two": b"\x40" + b'{"channels":["a","b","a"],"data_base64":"AAH/"}',
    "exclude": b"\x40" + b'{"channel":"a","data":"x","exclude_session":"7"}',
    "unknown_field": b"\x40" + b'{"channel":"a","data":"x","colour":1}',
    "both_channel_forms": b"\x40" + b'{"channel":"a","channels":["b"],"data":""}',
    "bad_channel": b"\x40" + b'{"channel":"a b","data":""}',
    "too_large": b"\x01" + b'{"channel":"a","data":"12345"}',
    "bad_base64": b"\x40" + b'{"channel":"a","data_base64":"***"}',
    "not_json": b"\x40" + b'{"channel":',
}
for name, data in http_publish.items():
    write("http_publish", name, data)


def upgrade(method="GET", query="-", headers=()):
    return "\n".join([method, query] + [f"{k}: {v}" for k, v in headers]).encode()


GOOD = [("Connection", "Upgrade"), ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")]
ws_upgrade = {
    "rfc6455_example": upgrade(headers=GOOD),
    "channels_and_json": upgrade(query="channel=a&channel=b%2Fc&channel=a&protocol=json", headers=GOOD),
    "bad_channel_space": upgrade(query="channel=a+b", headers=GOOD),
    "bad_protocol": upgrade(query="protocol=xml", headers=GOOD),
    "percent_edge_cases": upgrade(query="channel=%zz%4&x=%&%41%2", headers=GOOD),
    "post": upgrade(method="POST", headers=GOOD),
    "connection_list": upgrade(headers=[("Connection", "keep-alive, UPGRADE")] + GOOD[1:]),
    "connection_in_second_header": upgrade(headers=[("Connection", "keep-alive"), ("Connection", "upgrade")] + GOOD[1:]),
    "version_8": upgrade(headers=GOOD[:2] + [("Sec-WebSocket-Version", "8"), GOOD[3]]),
    "two_versions": upgrade(headers=GOOD[:2] + [("Sec-WebSocket-Version", "8"), ("Sec-WebSocket-Version", "13"), GOOD[3]]),
    "short_key": upgrade(headers=GOOD[:3] + [("Sec-WebSocket-Key", "c2hvcnQ=")]),
    "no_key": upgrade(headers=GOOD[:3]),
    "obs_text_connection": b"GET\n-\nConnection: upgrade\xff\nSec-WebSocket-Version: 13\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
}
for name, data in ws_upgrade.items():
    write("ws_upgrade", name, data)

# ---- UDP datagrams and return-routability --------------------------------------------------------
# Byte 0: bit 0 json listener, bit 1 validation off. Steps: opcode (source << 5 | op), operands.
DGRAM, ECHO, FRAME, EPOCH, REQ_RAW, REQ_JSON, FAKE_ECHO = 0, 1, 2, 3, 4, 5, 6


def step(source, op, *operands):
    return bytes([source << 5 | op]) + b"".join(
        o if isinstance(o, bytes) else bytes([o]) for o in operands)


def dgram(source, payload):
    return step(source, DGRAM, len(payload), payload)


udp = {
    # An honest client: request, echo, message, then frames flow.
    "request_echo_message": b"\x00" + step(0, REQ_RAW) + step(0, ECHO) + dgram(0, b"hello")
    + step(0, FRAME, 50) + step(0, FRAME, 200),
    # A sensor: messages first, the cookie is offered once it fits in 3x, then echoed.
    "sensor_offer_then_echo": b"\x00" + dgram(1, b"t=21.5") + dgram(1, b"t=21.6") + step(1, ECHO)
    + step(1, FRAME, 100),
    # A spoofed source on a busy channel: frames it cannot pay for, forged echoes.
    "spoofed_busy_channel": b"\x00" + dgram(4, b"join lobby, victim!!") + step(4, FRAME, 3)
    + step(4, FRAME, 3) + step(4, FRAME, 200) + step(4, FAKE_ECHO, b"\x01\x23\x45\x67\x89\xab\xcd\xef")
    + step(4, REQ_RAW) + step(4, FRAME, 1),
    # Cookies expire after two epochs; a late echo is answered with a fresh cookie.
    "stale_echo": b"\x00" + step(2, REQ_RAW) + step(2, EPOCH) + step(2, EPOCH) + step(2, ECHO)
    + step(2, ECHO) + step(2, FRAME, 10),
    "json_listener": b"\x01" + step(0, REQ_JSON) + step(0, ECHO) + dgram(0, b'{"type":"subscribe","channel":"a"}')
    + dgram(3, b'{"type":"cookie","cookie":"00112233445566"}') + dgram(3, b'{"type":"cookie"}'),
    "raw_prefix_lookalikes": b"\x00" + dgram(0, b"SOCKHUB-COOKIES") + dgram(0, b"SOCKHUB-COOKIE  x\r\n")
    + dgram(0, b"SOCKHUB-COOKIE\n") + dgram(5, b"SOCKHUB-COOKIE 0011223344556677"),
    "validation_off": b"\x02" + dgram(6, b"x") + step(6, FRAME, 255) + step(6, FRAME, 255),
}
for name, data in udp.items():
    write("udp_datagram", name, data)

# ---- hub operation sequences ---------------------------------------------------------------------
# Opcode: slot << 4 | op. Channels: 0 a, 1 b, 2 c, 3 lobby, 4 "bad name", 5 "", 6 165 bytes.
OPEN_RAW, OPEN_JSON, SUB, UNSUB, PUB, PUB_OTHERS, APP_PUB, BCAST, SEND, CLOSE, TAKE, GONE, TAKE_ALL = range(13)


def op(slot, kind, *operands):
    return bytes([slot << 4 | kind]) + b"".join(
        o if isinstance(o, bytes) else bytes([o]) for o in operands)


def payload(p):
    return bytes([len(p)]) + p


hub = {
    # Two raw sessions and a json one in a and b: broadcast reaches the raw one once.
    "broadcast_dedup": op(0, OPEN_RAW) + op(1, OPEN_RAW) + op(2, OPEN_JSON)
    + op(0, SUB, 0) + op(0, SUB, 1) + op(1, SUB, 0) + op(1, SUB, 1) + op(2, SUB, 0) + op(2, SUB, 1)
    + op(0, BCAST, payload(b"hi all")) + op(0, TAKE_ALL),
    "publish_to_others_and_app": op(0, OPEN_JSON) + op(1, OPEN_RAW) + op(0, SUB, 3) + op(1, SUB, 3)
    + op(0, PUB, 3, payload(b"\xff\x00binary")) + op(0, PUB_OTHERS, 3, payload(b"others"))
    + op(0, APP_PUB, 3, payload(b"from the app")) + op(0, TAKE_ALL),
    "subscribe_errors": op(0, OPEN_RAW) + op(0, SUB, 4) + op(0, SUB, 5) + op(0, SUB, 6)
    + op(0, SUB, 0) + op(0, SUB, 0) + op(0, SUB, 1) + op(0, SUB, 2) + op(0, SUB, 3)
    + op(0, UNSUB, 1) + op(0, UNSUB, 1) + op(0, SUB, 3),
    "slow_consumer": op(0, OPEN_RAW) + op(1, OPEN_RAW) + op(0, SUB, 0) + op(1, SUB, 0)
    + b"".join(op(1, PUB_OTHERS, 0, payload(b"m%d" % i)) for i in range(10))
    + op(0, SEND, payload(b"late")) + op(0, SUB, 1) + op(0, TAKE) + op(0, SEND, payload(b"gone")),
    "kick_then_take": op(0, OPEN_JSON) + op(0, SUB, 2) + op(0, SEND, payload(b"direct"))
    + op(0, CLOSE) + op(0, SEND, payload(b"after close")) + op(0, CLOSE) + op(0, TAKE)
    + op(0, CLOSE) + op(0, OPEN_RAW) + op(0, SUB, 2),
    "last_subscriber_leaves": op(0, OPEN_RAW) + op(1, OPEN_RAW) + op(0, SUB, 1) + op(1, SUB, 1)
    + op(0, GONE) + op(1, UNSUB, 1) + op(1, APP_PUB, 1, payload(b"nobody")) + op(1, GONE),
}
for name, data in hub.items():
    write("hub_ops", name, data)

# ---- Pusher client messages ----------------------------------------------------------------------
# Lines `<op><slot><rest>`: m text, b binary, s<auth><channel>[\t<channel_data>] subscribe,
# u<channel> unsubscribe, i<auth><user_data> signin, c<name>\t<channel>[\t<data>] client event,
# p ping, x[<id>] close and reopen. Auth codes: g good, o other socket's, f last digit changed,
# u upper case, k other key, d other channel data, n none. Slots 0, 1: app 0; slot 2: app 1.


def steps(*lines):
    return "\n".join(lines).encode()


pusher_message = {
    "public_subscribe_ping": steps("s0nnews", "p0", "s1nnews", "u0news", "s0gnews"),
    "private_auth_codes": steps("s0gprivate-chat", "s1oprivate-chat", "s1fprivate-chat",
                                "s1kprivate-chat", "s1uprivate-chat", "s2gprivate-chat"),
    "presence_two_users": steps('s0gpresence-room\t{"user_id":"u1","user_info":{"name":"A"}}',
                                's1gpresence-room\t{"user_id":2}',
                                's2gpresence-room\t{"user_id":"u1","user_info":[]}',
                                "u2presence-room", "x1", "x0"),
    "presence_bad_channel_data": steps("s0gpresence-x", "s0gpresence-x\tnot json",
                                       's0gpresence-x\t{"user_info":{}}',
                                       's0dpresence-x\t{"user_id":"a"}'),
    "client_events_cache": steps("s0gprivate-cache-x", 'c0client-typing\tprivate-cache-x\t{"a":1}',
                                 "s1gprivate-cache-x", "c1client-x\tprivate-cache-x\ttext",
                                 "s2gprivate-cache-x", "c2client-x\tprivate-cache-x",
                                 "c0client-nochannel", "c0client-x\tpublic", "c0other\tprivate-cache-x"),
    "presence_client_event": steps('s0gpresence-c\t{"user_id":"7"}', 's1gpresence-c\t{"user_id":"8"}',
                                   "c1client-hi\tpresence-c\tnull", "s0ncache-public", "s1ncache-public"),
    "signin": steps('i0g{"id":"u1","name":"x"}', 'i1f{"id":1}', 'i0g{"name":"no id"}',
                    'i2u{"id":null}', "i0n"),
    "raw_messages": steps('m0{"event":"pusher:ping","data":{}}',
                          'm1{"event":"pusher:subscribe","data":{"channel":"a b"}}',
                          "m2not json", "b0binary", 'm0{"event":"unknown"}',
                          'm0{"event":"pusher:subscribe","data":{"channel":"x","auth":1}}',
                          'm0{"event":"pusher:unsubscribe","data":"x"}',
                          'm0{"event":"client-x","channel":7}', 'm0{"event":"pusher:pong"}'),
    "too_many_channels": steps("s0na", "s0nb", "s0nc", "s0nd", "s0ne", "u0a", "s0ne"),
    "channel_names": steps("s0n" + "a" * 164, "s0n" + "a" * 165, "s0n", "s0nA-Za_z0=9@,.;",
                           "s0nhas space", "s0n\u00e9t\u00e9", "s0nchan/slash"),
    "close_reopen_ids": steps("x04294967296", "x118446744073709551615", "x20", "x2", "s0nz", "x1"),
    "subscribe_again": steps('s0gpresence-r\t{"user_id":"u"}', 's1gpresence-r\t{"user_id":"v"}',
                             's0gpresence-r\t{"user_id":"u"}', 's0gpresence-r\t{"user_id":"w"}',
                             "s0nnews", "s0nnews", "s1gprivate-cache-p", "s1gprivate-cache-p",
                             "u0presence-r", "x1"),
}
for name, data in pusher_message.items():
    write("pusher_message", name, data)

# ---- Pusher signatures and API event bodies ------------------------------------------------------
# Lines: key, secret, socket id, channel, channel/user data, method, path, extra query
# parameters, control (route e|b|-, signing s|x|e|w|n, change index), then the body.
DOCS_KEY, DOCS_SECRET = "278d425bdf160c739803", "7ad3773142a6692b25b8"  # Pusher's docs examples
PRESENCE_DATA = '{"user_id":"10","user_info":{"name":"Mr. Channels"}}'


def request(body=b"", control="es0", key=DOCS_KEY, secret=DOCS_SECRET, sid="1234.1234",
            channel="private-foobar", data=PRESENCE_DATA, method="POST", path="/apps/3/events",
            params=""):
    head = "\n".join([key, secret, sid, channel, data, method, path, params, control])
    return head.encode() + b"\n" + body


pusher_request = {
    "docs_example": request(b'{"name":"foo","channels":["project-3"],"data":"{\\"some\\":\\"data\\"}"}'),
    "events_except_and_info": request(
        b'{"name":"ev","channels":["a","b"],"data":"hi","socket_id":"0.1",'
        b'"info":"subscription_count,user_count"}', control="es7"),
    "batch_two": request(
        b'{"batch":[{"name":"e1","channel":"a","data":{"x":1}},'
        b'{"name":"e2","channel":"c","data":"y","info":"subscription_count"}]}', control="bs12"),
    "data_over_10k": request(b'{"name":"big","channel":"a","data":"' + b"x" * 10241 + b'"}', control="es1"),
    "bad_signature": request(b'{"name":"e","channel":"a"}', control="ex2"),
    "expired": request(b'{"name":"e","channel":"a"}', control="ee"),
    "unknown_app": request(b'{"name":"e","channel":"a"}', control="bw"),
    "unsigned": request(b'{"batch":[]}', control="bn"),
    "get_with_params": request(control="-s5", method="GET", path="/apps/1/channels",
                               params="filter_by_prefix=presence-&info=user_count"),
    "odd_params_and_method": request(b"{}", control="es99", method="post", path="/apps/1/events",
                                     params="\u043a\u043b\u044e\u0447=\u0437\u043d\u0430\u0447\u0435\u043d\u0438\u0435&A=B&a b=c+d&&=x"),
    "types_and_duplicates": request(b'{"name":"e","name":"f","channel":"a"}', control="es3"),
    "batch_second_invalid": request(
        b'{"batch":[{"name":"e1","channel":"a","data":"1"},{"name":"e2","channel":"a b","data":"2"}]}',
        control="bs4"),
    "channels_repeated": request(b'{"name":"e","channels":["b","a","b"],"data":null,"info":"subscription_count"}',
                                 control="es8"),
    "array_body": request(b'["e","x","a"]', control="es2"),
    "private_key_and_signin_data": request(b"", control="-s40", data='{"id":"u1","name":"x"}',
                                           sid="4294967295.4294967295", channel="presence-room"),
}
for name, data in pusher_request.items():
    write("pusher_request", name, data)
