"""The fake Discord's world: users, guilds, channels, messages, interactions and a simulated clock.

Everything here is mutated only on the fake server's event loop.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Any

DISCORD_EPOCH_MS = 1420070400000
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
TOKEN_LIFETIME_S = 15 * 60
ATTACHMENT_URL_LIFETIME_S = 24 * 3600
ADMINISTRATOR = 1 << 3
# Send messages, attach files, read history, view channel, use application commands.
MEMBER_PERMISSIONS = (1 << 11) | (1 << 15) | (1 << 16) | (1 << 10) | (1 << 31)


class Clock:
    """Simulated wall clock: real time plus an offset that tests advance."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def now(self) -> float:
        """Return simulated unix seconds."""
        return time.time() + self.offset_s

    def advance(self, seconds: float) -> None:
        """Jump the simulated clock forward."""
        self.offset_s += seconds


class Snowflakes:
    """Monotonic snowflake ids whose timestamp part follows the simulated clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._counter = itertools.count(1)

    def next(self) -> int:
        """Return a fresh id."""
        ms = int(self._clock.now() * 1000) - DISCORD_EPOCH_MS
        return (ms << 22) | (next(self._counter) & 0x3FFFFF)


@dataclass
class User:
    """A Discord account."""

    id: int
    name: str
    bot: bool = False
    dms_closed: bool = False


@dataclass
class Channel:
    """A text channel in a guild, or a DM channel (guild_id None)."""

    id: int
    name: str
    guild_id: int | None = None
    recipient_id: int | None = None
    # Sending here answers 403 / 50013 Missing Permissions.
    forbidden: bool = False

    @property
    def is_dm(self) -> bool:
        """Whether this is a DM channel."""
        return self.guild_id is None


@dataclass
class Guild:
    """A server; `bot_installed` False models a server where only users installed the app."""

    id: int
    name: str
    owner_id: int
    bot_installed: bool = True
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    admins: set[int] = field(default_factory=set)
    channels: list[int] = field(default_factory=list)


@dataclass
class Attachment:
    """A file stored by the fake and served on a 127.0.0.1 URL."""

    id: int
    filename: str
    content_type: str
    data: bytes
    expires_at: float


@dataclass
class Message:
    """A message as Discord stores it."""

    id: int
    channel_id: int
    author_id: int
    content: str
    created_at: float
    attachments: list[int] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    nonce: str | None = None
    webhook_id: int | None = None
    interaction_id: int | None = None
    edited_at: float | None = None
    # The edits this message went through, as (content, attachment filenames).
    history: list[tuple[str, list[str]]] = field(default_factory=list)


@dataclass
class Interaction:
    """An interaction the fake dispatched, and what the application did with it."""

    id: int
    token: str
    type: int
    user_id: int
    channel_id: int
    guild_id: int | None
    created_at: float
    sent_monotonic: float
    size_limit: int
    payload: dict[str, Any]
    acked_monotonic: float | None = None
    ack_type: int | None = None
    ack_data: dict[str, Any] = field(default_factory=dict)
    original_id: int | None = None
    followups: int = 0

    @property
    def user_install_only(self) -> bool:
        """Whether the app is used here only through a user install."""
        owners = self.payload.get("authorizing_integration_owners", {})
        return "0" not in owners

    @property
    def ack_latency_s(self) -> float | None:
        """Seconds between dispatch and the callback, on the real clock."""
        if self.acked_monotonic is None:
            return None
        return self.acked_monotonic - self.sent_monotonic


@dataclass
class Post:
    """One REST request the fake received, with the answer it gave."""

    method: str
    path: str
    status: int
    json: dict[str, Any]
    files: list[tuple[str, int]]
    at_monotonic: float
    at_sim: float
    authorized: bool

    @property
    def files_named(self) -> list[str]:
        """Return the names of the uploaded files."""
        return [name for name, _size in self.files]


class World:
    """All state of the fake Discord."""

    def __init__(self, bot_token: str, application_id: int | None = None) -> None:
        self.clock = Clock()
        self.ids = Snowflakes(self.clock)
        self.bot_token = bot_token
        self.application_id = application_id or self.ids.next()
        self.bot = User(self.application_id, "jayavatar", bot=True)
        self.users: dict[int, User] = {self.bot.id: self.bot}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.attachments: dict[int, Attachment] = {}
        self.interactions: dict[int, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        self.posts: list[Post] = []
        # Ids of stored files fetched through their URLs (uploads the bot downloaded).
        self.fetches: list[int] = []
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        # Followups allowed per interaction when the app is only user-installed there.
        self.user_install_followup_limit = 5
        # How long enforce_nonce remembers a nonce ("the past few minutes").
        self.nonce_window_s = 5 * 60.0
        # Discord's 3 s acknowledgement deadline; None records latencies without refusing.
        self.ack_deadline_s: float | None = None
        self.late_acks: list[int] = []

    def add_user(self, name: str, dms_closed: bool = False) -> User:
        """Create a user account."""
        user = User(self.ids.next(), name, dms_closed=dms_closed)
        self.users[user.id] = user
        return user

    def add_guild(self, name: str, owner: User, bot_installed: bool = True) -> Guild:
        """Create a guild owned by `owner`, with one text channel."""
        guild = Guild(self.ids.next(), name, owner.id, bot_installed=bot_installed)
        guild.admins.add(owner.id)
        self.guilds[guild.id] = guild
        self.add_channel(guild, "general")
        return guild

    def add_channel(self, guild: Guild, name: str) -> Channel:
        """Create a text channel in `guild`."""
        channel = Channel(self.ids.next(), name, guild_id=guild.id)
        self.channels[channel.id] = channel
        guild.channels.append(channel.id)
        return channel

    def dm_channel(self, user: User) -> Channel:
        """Return the DM channel between the bot and `user`, creating it once."""
        for channel in self.channels.values():
            if channel.is_dm and channel.recipient_id == user.id:
                return channel
        channel = Channel(self.ids.next(), f"dm-{user.name}", recipient_id=user.id)
        self.channels[channel.id] = channel
        return channel

    def add_attachment(self, filename: str, content_type: str, data: bytes) -> Attachment:
        """Store a file and return its record (URL valid for a day of simulated time)."""
        att = Attachment(
            self.ids.next(),
            filename,
            content_type,
            data,
            self.clock.now() + ATTACHMENT_URL_LIFETIME_S,
        )
        self.attachments[att.id] = att
        return att

    def token_alive(self, interaction: Interaction) -> bool:
        """Whether an interaction token is still within its 15 minutes."""
        return self.clock.now() - interaction.created_at < TOKEN_LIFETIME_S

    def within_ack_deadline(self, interaction: Interaction) -> bool:
        """Whether a callback arriving now would still be accepted."""
        if self.ack_deadline_s is None:
            return True
        return time.monotonic() - interaction.sent_monotonic <= self.ack_deadline_s

    def acknowledge(self, interaction: Interaction, kind: int, data: dict[str, Any]) -> None:
        """Record the (first) callback of an interaction."""
        interaction.acked_monotonic = time.monotonic()
        interaction.ack_type = kind
        interaction.ack_data = data

    def upload_limit(self, channel: Channel) -> int:
        """Return the per-file upload limit of a channel."""
        if channel.guild_id is None:
            return DEFAULT_UPLOAD_LIMIT
        return self.guilds[channel.guild_id].upload_limit

    def find_nonce(self, channel_id: int, author_id: int, nonce: str) -> Message | None:
        """Return a recent message by `author_id` with `nonce`, as enforce_nonce would."""
        horizon = self.clock.now() - self.nonce_window_s
        for message in self.messages.values():
            if (
                message.channel_id == channel_id
                and message.author_id == author_id
                and message.nonce == nonce
                and message.created_at >= horizon
            ):
                return message
        return None

    def messages_with_file(self, filename: str) -> list[Message]:
        """Return every live message carrying an attachment named `filename`."""
        found = []
        for message in self.messages.values():
            names = [self.attachments[a].filename for a in message.attachments]
            if filename in names:
                found.append(message)
        return found
