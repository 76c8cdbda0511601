"""Attachments for enrollment: checked and downloaded while the command runs (their URLs expire).

Every check is the upload gate's (`jobs.gate`), shared with the API and the CLI: the declared
size and type before downloading, the size again while streaming (a declared size may lie), then
the content by its first bytes when the job client stores it. The worker then decodes the file
for real: speech present, a face present for avatars.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import discord

from jayavatar.errors import BadInput, TransientError
from jayavatar.settings import Settings
from jobs.gate import UploadKind, check_declared, receive, rules_for

CHUNK = 256 * 1024


async def fetch_upload(
    session: aiohttp.ClientSession,
    att: discord.Attachment,
    kind: UploadKind,
    settings: Settings,
    folder: Path,
) -> Path:
    """Check an attachment's declared size and type, then download it into `folder`.

    The file is saved under a fixed name: the user's name and extension are never used.
    """
    check_declared(kind, settings, repr(att.filename), att.size, att.content_type)
    dest = folder / "upload"
    try:
        async with session.get(att.url) as response:
            if response.status != 200:
                raise BadInput(
                    f"could not download {att.filename!r} (HTTP {response.status}); attach it again"
                )
            cap = rules_for(kind, settings).max_bytes
            await receive(response.content.iter_chunked(CHUNK), dest, cap, repr(att.filename))
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientError(f"could not download {att.filename!r} from Discord") from exc
    return dest
