"""`FakeDiscord`: the fake REST + gateway server on 127.0.0.1, run in its own thread.

Tests drive it with plain (blocking) calls; every state change happens on the server's loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from aiohttp import web

from tests.fakediscord import interactions, payloads
from tests.fakediscord.common import Ctx
from tests.fakediscord.faults import Faults, Rule, Stall
from tests.fakediscord.gateway import Gateway
from tests.fakediscord.rest import API, build_app
from tests.fakediscord.state import Attachment, Channel, Guild, Interaction, Message, User, World

T = TypeVar("T")


class FakeDiscord:
    """A local Discord for one bot application."""

    def __init__(self, token: str = "fake-bot-token") -> None:
        self.world = World(token)
        self.faults = Faults()
        self.ctx = Ctx(self.world, self.faults)
        self.gateway = Gateway(self.ctx)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="fakediscord"
        )
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeDiscord:
        """Start serving on a free port of 127.0.0.1."""
        self._thread.start()
        self._run(self._serve())
        return self

    async def _serve(self) -> None:
        app = build_app(self.ctx)
        self.gateway.add_routes(app)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.ctx.base_url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._runner is not None:
            self._run(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    @property
    def api_base(self) -> str:
        """REST base URL, as `Route.BASE` expects it."""
        return self.ctx.base_url + API

    @property
    def gateway_url(self) -> str:
        """Gateway URL for a plain `Client`."""
        return self.ctx.base_url.replace("http://", "ws://") + "/gateway"

    def bot_env(self) -> dict[str, str]:
        """Environment variables that point a `jayavatar bot` process here."""
        return {
            "JAYAVATAR_DISCORD_TOKEN": self.world.bot_token,
            "JAYAVATAR_DISCORD_API_BASE": self.api_base,
            "JAYAVATAR_DISCORD_GATEWAY_URL": self.gateway_url,
        }

    # -- running code on the server loop -------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def call(self, fn: Callable[[World], T]) -> T:
        """Run `fn(world)` on the server loop and return its result."""

        async def wrapper() -> T:
            return fn(self.world)

        return self._run(wrapper())

    def wait_for(self, fn: Callable[[World], T | None], what: str, timeout: float = 60.0) -> T:
        """Poll `fn(world)` until it returns something truthy; fail with `what` after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.call(fn)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"fake Discord: gave up waiting for {what}")
            time.sleep(0.05)

    # -- the world -----------------------------------------------------------------------------

    def add_user(self, name: str, dms_closed: bool = False) -> User:
        """Create a user."""
        return self.call(lambda w: w.add_user(name, dms_closed=dms_closed))

    def add_guild(self, name: str, owner: User, bot_installed: bool = True) -> Guild:
        """Create a guild with a #general channel (call before the bot connects)."""
        return self.call(lambda w: w.add_guild(name, owner, bot_installed=bot_installed))

    def channel_of(self, guild: Guild) -> Channel:
        """Return a guild's first channel."""
        return self.call(lambda w: w.channels[guild.channels[0]])

    def dm_channel(self, user: User) -> Channel:
        """Return the bot's DM channel with `user`."""
        return self.call(lambda w: w.dm_channel(user))

    def upload(self, filename: str, content_type: str, data: bytes) -> Attachment:
        """Store a file as a user upload would (for attachment options)."""
        return self.call(lambda w: w.add_attachment(filename, content_type, data))

    def advance(self, seconds: float) -> None:
        """Move the simulated clock forward (token and URL expiry)."""
        self.call(lambda w: w.clock.advance(seconds))

    # -- driving the bot -----------------------------------------------------------------------

    def slash(
        self,
        user: User,
        command: str,
        channel: Channel,
        /,
        user_install: bool = False,
        **values: Any,
    ) -> Interaction:
        """Dispatch a slash command such as `slash(u, "voice add", ch, name="me", sample=att)`."""

        def build(w: World) -> Interaction:
            data = interactions.slash_data(w, self.ctx.base_url, command, values)
            return interactions.new_interaction(
                w, interactions.APP_COMMAND, user, channel, data, user_install
            )

        interaction = self.call(build)
        self._run(self.gateway.dispatch("INTERACTION_CREATE", interaction.payload))
        return interaction

    def autocomplete(
        self, user: User, command: str, channel: Channel, focused: str, /, **values: Any
    ) -> Interaction:
        """Dispatch an autocomplete request for option `focused`."""

        def build(w: World) -> Interaction:
            data = interactions.slash_data(w, self.ctx.base_url, command, values, focused)
            return interactions.new_interaction(w, interactions.AUTOCOMPLETE, user, channel, data)

        interaction = self.call(build)
        self._run(self.gateway.dispatch("INTERACTION_CREATE", interaction.payload))
        return interaction

    def click(self, user: User, message: Message, custom_id: str) -> Interaction:
        """Dispatch a press of the button `custom_id` on `message`."""

        def build(w: World) -> Interaction:
            current = w.messages[message.id]
            data = interactions.component_data(current, custom_id)
            raw = payloads.message(w, self.ctx.base_url, current)
            channel = w.channels[current.channel_id]
            return interactions.new_interaction(
                w, interactions.COMPONENT, user, channel, data, message=raw
            )

        interaction = self.call(build)
        self._run(self.gateway.dispatch("INTERACTION_CREATE", interaction.payload))
        return interaction

    def wait_acked(self, interaction: Interaction, timeout: float = 30.0) -> Interaction:
        """Wait until the bot acknowledged `interaction`; return its updated record."""

        def acked(w: World) -> Interaction | None:
            current = w.interactions[interaction.id]
            return current if current.ack_type is not None else None

        return self.wait_for(acked, f"an acknowledgement of interaction {interaction.id}", timeout)

    def original(self, interaction: Interaction) -> Message | None:
        """Return the current state of an interaction's original response."""
        return self.call(lambda w: w.messages.get(w.interactions[interaction.id].original_id or 0))

    def wait_original(
        self,
        interaction: Interaction,
        test: Callable[[Message], bool],
        what: str,
        timeout: float = 60.0,
    ) -> Message:
        """Wait until the original response satisfies `test`."""

        def check(w: World) -> Message | None:
            message = w.messages.get(w.interactions[interaction.id].original_id or 0)
            return message if message is not None and test(message) else None

        return self.wait_for(check, what, timeout)

    def messages_in(self, channel: Channel) -> list[Message]:
        """Return the messages of a channel, oldest first."""
        return self.call(
            lambda w: sorted(
                (m for m in w.messages.values() if m.channel_id == channel.id), key=lambda m: m.id
            )
        )

    def deliveries(self, filename: str) -> list[Message]:
        """Return every message that carries a file named `filename`."""
        return self.call(lambda w: w.messages_with_file(filename))

    # -- faults and gateway control ------------------------------------------------------------

    def fail(
        self, method: str, path: str, status: int, code: int, message: str, times: int = 1
    ) -> Rule:
        """Answer the next `times` requests matching `path` (a regex) with an error."""
        return self.call(
            lambda w: self.faults.add(method, path, status, code, message, times=times)
        )

    def rate_limit(self, method: str, path: str, retry_after: float, times: int = 1) -> Rule:
        """Answer the next `times` matching requests with 429 and `retry_after`."""
        return self.call(lambda w: self.faults.add_rate_limit(method, path, retry_after, times))

    def stall(self, method: str, path: str, files_only: bool = False) -> Stall:
        """Serve the next matching request but hold its answer until `release()`."""

        def add(w: World) -> Stall:
            stall = Stall(method, path, self._loop, files_only)
            self.faults.stalls.append(stall)
            return stall

        return self.call(add)

    def send_reconnect(self) -> None:
        """Send op 7 RECONNECT on the live session."""
        self._run(self.gateway.send_reconnect())

    def invalidate_session(self) -> None:
        """Send op 9 INVALID_SESSION (not resumable) on the live session."""
        self._run(self.gateway.invalidate())

    def wait_connected(self, timeout: float = 60.0) -> None:
        """Wait until a bot holds a live gateway session."""
        self.wait_for(lambda w: self.gateway.connected(), "a gateway session", timeout)
