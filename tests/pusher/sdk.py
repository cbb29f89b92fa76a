"""The `pusher` server SDK from PyPI publishing through sockhub's Pusher HTTP API.

Usage: python3 sdk.py HOST PORT APP_ID KEY SECRET
Triggers `update` on channel `py-news` with {"n": 1}, then a batch, reads channel info and the
channel list, and checks that a wrong secret is refused. Prints OK lines; exits 1 on failure.
"""
import sys

import pusher

host, port, app_id, key, secret = sys.argv[1:6]
client = pusher.Pusher(app_id=app_id, key=key, secret=secret, host=host, port=int(port), ssl=False)

client.trigger("py-news", "update", {"n": 1})
print("OK trigger")
client.trigger_batch([{"channel": "py-news", "name": "batch", "data": {"n": 2}}])
print("OK batch")
info = client.channel_info("py-news", ["subscription_count"])
assert info["occupied"] is True and info["subscription_count"] == 1, info
print("OK channel_info")
channels = client.channels_info(prefix_filter="py-")
assert "py-news" in channels["channels"], channels
print("OK channels_info")
wrong = pusher.Pusher(app_id=app_id, key=key, secret="wrong", host=host, port=int(port), ssl=False)
try:
    wrong.trigger("py-news", "x", {})
    print("FAIL wrong secret accepted")
    sys.exit(1)
except pusher.errors.PusherBadAuth:
    print("OK wrong secret")
print("DONE")
