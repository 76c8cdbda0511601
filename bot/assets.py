"""What `/voice` and `/avatar` share: enrollment from an attachment, listing, removal, default."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import discord

from bot.origin import origin_of, user_id
from bot.replies import defer_reply
from bot.uploads import fetch_upload
from jayavatar import ids
from jobs.accounts import AssetKind

if TYPE_CHECKING:
    from bot.services import BotServices


async def enroll(
    bot: BotServices,
    interaction: discord.Interaction,
    kind: AssetKind,
    media: discord.Attachment,
    name: str,
    replace: bool,
) -> None:
    """Download and check the attachment now (its URL expires), then queue the enrollment."""
    await defer_reply(interaction, ephemeral=True)
    assert bot.downloads is not None, "setup_hook opens the download session"
    folder = bot.jobs.storage.scratch_dir()
    try:
        path = await fetch_upload(bot.downloads, media, kind, bot.settings, folder)
        submit = bot.jobs.submit_voice_enroll if kind == "voice" else bot.jobs.submit_avatar_enroll
        req = await submit(
            user_id(interaction.user),
            name,
            path,
            replace=replace,
            origin=origin_of(interaction),
            label=repr(media.filename),
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    await bot.show_queued(interaction, req)


async def listing(bot: BotServices, kind: AssetKind, user: str) -> str:
    """Return the user's own and shared assets of one kind, default first marked."""
    accounts = bot.jobs.accounts
    profile = await accounts.profile(user)
    default = getattr(profile, kind)
    lines = []
    for asset in await accounts.usable(kind, user):
        mine = asset.owner == user
        label = asset.name if mine else asset.ref
        star = " ⭐ default" if default in (asset.ref, asset.name) and default else ""
        if mine and asset.shared_with:
            shared = ", ".join(_who(u) for u in asset.shared_with)
            lines.append(f"• `{label}`{star} — shared with {shared}")
        else:
            lines.append(f"• `{label}`{star}" + ("" if mine else " — shared with you"))
    if not lines:
        return f"You have no {kind} yet: use `/{kind} add`."
    return f"Your {kind}s:\n" + "\n".join(lines[:40])


def _who(user: str) -> str:
    snowflake = ids.discord_snowflake(user)
    return f"<@{snowflake}>" if snowflake is not None else f"`{user}`"


async def remove(bot: BotServices, kind: AssetKind, user: str, name: str) -> str:
    """Delete one of the user's assets."""
    files = await bot.jobs.accounts.remove(kind, user, name)
    return f"Removed {kind} `{name}` ({files} files deleted)."


async def set_default(bot: BotServices, kind: AssetKind, user: str, name: str) -> str:
    """Make an asset the user may use their default for /say."""
    asset = await bot.jobs.accounts.resolve(kind, user, name)
    await bot.jobs.accounts.set_default(user, **{kind: asset.ref})
    shown = asset.name if asset.owner == user else asset.ref
    return f"Your default {kind} is now `{shown}`."
