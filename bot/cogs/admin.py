"""`/admin`: queue, cancel, retry, pause/resume, allow/deny, quota, purge, stats.

`default_member_permissions` only hides the command in clients; every call is checked here, on
the server, against the admin list (or Administrator in a server that installed the bot).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.origin import origin_of, user_id
from bot.replies import defer_reply
from bot.text import request_line
from jayavatar.errors import BadInput, NotFound
from jobs.hosts import describe, list_workers

if TYPE_CHECKING:
    from bot.services import BotServices

QUIET = discord.AllowedMentions.none()
SHOWN = 25
STAGES = ("voice_wait_s", "voice_stage_s", "lipsync_wait_s", "lipsync_stage_s")


class NotAdmin(app_commands.CheckFailure):
    """The caller is not an admin."""


@app_commands.default_permissions(administrator=True)
class Admin(commands.GroupCog, group_name="admin", group_description="Run the deployment"):
    """The /admin commands."""

    def __init__(self, bot: BotServices) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Refuse everyone who is not an admin, whatever the client showed them."""
        if not await self.bot.is_admin(interaction):
            raise NotAdmin("only JayAvatar admins can use /admin")
        return True

    async def _say(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.followup.send(text[:2000], ephemeral=True, allowed_mentions=QUIET)

    @app_commands.command(name="queue", description="Everything waiting or running, with ages.")
    async def queue(self, interaction: discord.Interaction) -> None:
        """List unfinished requests, oldest first."""
        await defer_reply(interaction, ephemeral=True)
        store = self.bot.jobs.store
        active = sorted(await store.get_many(await store.active_ids()), key=lambda r: r.created_at)
        lines = [f"{request_line(r)} · {r.user}" for r in active[:SHOWN]]
        more = f"\n… and {len(active) - SHOWN} more" if len(active) > SHOWN else ""
        paused = "⏸️ rendering is paused\n" if await self.bot.jobs.accounts.is_paused() else ""
        await self._say(interaction, paused + ("\n".join(lines) or "The queue is empty.") + more)

    @app_commands.command(name="cancel", description="Cancel anyone's request.")
    async def cancel(self, interaction: discord.Interaction, request_id: str) -> None:
        """Cancel a request by id (or unique id prefix)."""
        await defer_reply(interaction, ephemeral=True)
        req = await self.bot.cancel_as(interaction, await self._resolve(request_id))
        await self._say(interaction, f"Cancelled: {request_line(req)}")

    @app_commands.command(name="retry", description="Queue a finished render again.")
    async def retry(self, interaction: discord.Interaction, request_id: str) -> None:
        """Retry a request by id; the new one is shown in this channel."""
        await defer_reply(interaction, ephemeral=False)
        rid = await self._resolve(request_id)
        req = await self.bot.retry_as(interaction, rid, origin_of(interaction))
        await self.bot.show_queued(interaction, req)

    @app_commands.command(name="pause", description="Stop accepting new renders.")
    async def pause(self, interaction: discord.Interaction) -> None:
        """Pause the queue (running requests finish)."""
        await defer_reply(interaction, ephemeral=True)
        await self.bot.jobs.accounts.pause()
        await self._say(interaction, "Paused: new renders are refused until `/admin resume`.")

    @app_commands.command(name="resume", description="Accept new renders again.")
    async def resume(self, interaction: discord.Interaction) -> None:
        """Resume the queue."""
        await defer_reply(interaction, ephemeral=True)
        await self.bot.jobs.accounts.resume()
        await self._say(interaction, "Resumed: renders are accepted again.")

    @app_commands.command(name="allow", description="Let a user render.")
    async def allow(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Put a user on the allow list."""
        await defer_reply(interaction, ephemeral=True)
        await self.bot.jobs.accounts.allow(user_id(user))
        await self._say(interaction, f"<@{user.id}> may render.")

    @app_commands.command(name="deny", description="Stop a user from rendering.")
    async def deny(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Put a user on the deny list."""
        await defer_reply(interaction, ephemeral=True)
        await self.bot.jobs.accounts.deny(user_id(user))
        await self._say(interaction, f"<@{user.id}> may no longer render.")

    @app_commands.command(name="quota", description="Set a user's daily renders and concurrency.")
    @app_commands.describe(daily="Renders per day", concurrent="Requests in progress at once")
    async def quota(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        daily: app_commands.Range[int, 0, 100_000],
        concurrent: app_commands.Range[int, 1, 100],
    ) -> None:
        """Set per-user limits."""
        await defer_reply(interaction, ephemeral=True)
        await self.bot.jobs.accounts.set_quota(user_id(user), daily, concurrent)
        await self._say(
            interaction, f"<@{user.id}>: {daily} renders a day, {concurrent} at a time."
        )

    @app_commands.command(
        name="purge", description="Delete a user's voices, avatars, renders, records."
    )
    async def purge(self, interaction: discord.Interaction, user: discord.User) -> None:
        """Delete everything a user has."""
        await defer_reply(interaction, ephemeral=True)
        counts = await self.bot.jobs.purge_user(user_id(user))
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        await self._say(interaction, f"Purged <@{user.id}>: {summary}.")

    @app_commands.command(name="stats", description="Renders per day, failures, mean stage times.")
    async def stats(self, interaction: discord.Interaction) -> None:
        """Show the last week's counters."""
        await defer_reply(interaction, ephemeral=True)
        days = await self.bot.jobs.accounts.stats(days=7)
        lines = ["day · renders · failed · mean s (voice wait/run, lip-sync wait/run)"]
        for day, row in days.items():
            done = row.get("render_done", 0.0)
            means = "/".join(
                f"{row.get(f'{s}_sum', 0.0) / done:.1f}" if done else "-" for s in STAGES
            )
            lines.append(f"`{day}` · {done:.0f} · {row.get('render_failed', 0.0):.0f} · {means}")
        workers = await list_workers(self.bot.jobs.redis, self.bot.settings)
        lines.append(f"workers ({len(workers)}):" if workers else "workers: none alive")
        lines.extend(f"- {describe(w)}" for w in workers)
        await self._say(interaction, "\n".join(lines))

    async def _resolve(self, given: str) -> str:
        """Turn a full id or a unique prefix (as /jobs shows) into a request id."""
        prefix = given.strip().lower()
        if len(prefix) == 32:
            return prefix
        if len(prefix) < 6:
            raise BadInput("give at least the first 6 characters of the request id")
        recent = await self.bot.jobs.list_requests(limit=500)
        found = {r.id for r in recent if r.id.startswith(prefix)}
        if len(found) != 1:
            raise NotFound(f"no single request starts with {prefix!r}")
        return found.pop()
