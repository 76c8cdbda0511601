"""Forged Discord traffic for the abuse tests: lying attachment sizes, buttons nobody was shown.

The fake Discord's own helpers only send what a real client could; these build the payloads by
hand, as a modified client or a replayed request would.
"""

from __future__ import annotations

import io
import struct
import wave
import zipfile
from typing import Any

from tests.fakediscord import interactions, payloads
from tests.fakediscord.server import FakeDiscord
from tests.fakediscord.state import Channel, Interaction, Message, User, World


def dispatch(fake: FakeDiscord, interaction: Interaction) -> Interaction:
    """Send an interaction the way the fake's own helpers do."""
    fake._run(fake.gateway.dispatch("INTERACTION_CREATE", interaction.payload))
    return interaction


def slash_with_size(
    fake: FakeDiscord, user: User, channel: Channel, command: str, size: int, **values: Any
) -> Interaction:
    """Dispatch a slash command whose attachments declare `size` bytes, whatever they hold."""

    def build(world: World) -> Interaction:
        data = interactions.slash_data(world, fake.ctx.base_url, command, values)
        for att in data.get("resolved", {}).get("attachments", {}).values():
            att["size"] = size
        return interactions.new_interaction(world, interactions.APP_COMMAND, user, channel, data)

    return dispatch(fake, fake.call(build))


def press(fake: FakeDiscord, user: User, message: Message, custom_id: str) -> Interaction:
    """Dispatch a press of a button with any `custom_id`, as if `message` carried that button.

    Discord only sends presses of buttons a message really has; putting a forged one on the
    message stands for a tampered payload (or a bug that showed the wrong id).
    """

    def build(world: World) -> Interaction:
        current = world.messages[message.id]
        button = {"type": 2, "style": 1, "label": "Forged", "custom_id": custom_id}
        if all(
            c.get("custom_id") != custom_id for r in current.components for c in r["components"]
        ):
            current.components = [*current.components, {"type": 1, "components": [button]}]
        raw = payloads.message(world, fake.ctx.base_url, current)
        data = {"custom_id": custom_id, "component_type": 2}
        channel = world.channels[current.channel_id]
        return interactions.new_interaction(
            world, interactions.COMPONENT, user, channel, data, message=raw
        )

    return dispatch(fake, fake.call(build))


def wav_bytes(seconds: float, rate: int = 8_000, claim_s: float | None = None) -> bytes:
    """Return a silent 16-bit mono WAV; with `claim_s`, the header claims that duration instead."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\0\0" * int(seconds * rate))
    data = bytearray(buffer.getvalue())
    if claim_s is not None:
        claimed = int(claim_s * rate) * 2
        data[4:8] = struct.pack("<I", claimed + 36)  # RIFF size
        data[40:44] = struct.pack("<I", claimed)  # data chunk size
    return bytes(data)


def zip_bomb(inflated: int = 50 * 2**20) -> bytes:
    """Return a small zip that inflates to `inflated` bytes of zeros."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("voice.wav", b"\0" * inflated)
    return buffer.getvalue()


def still_gif() -> bytes:
    """Return a 1x1 single-frame GIF."""
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )
