"""Settings: the one configuration object, built once in each entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of JayAvatar; read from `JAYAVATAR_*` variables and an optional `.env` file."""

    model_config = SettingsConfigDict(
        env_prefix="JAYAVATAR_", env_file=".env", extra="ignore", frozen=True
    )

    # Redis and queues
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "jayavatar"
    voice_queue: str = "jayavatar:voice"
    lipsync_queue: str = "jayavatar:lipsync"
    voice_timeout_s: int = Field(300, ge=5)
    lipsync_timeout_s: int = Field(900, ge=5)
    enroll_timeout_s: int = Field(300, ge=5)
    max_tries: int = Field(3, ge=1)
    # A request not finished this long after its last progress is re-enqueued by the reconciler.
    stuck_after_s: int = Field(120, ge=5)
    keep_result_s: int = Field(7 * 24 * 3600, ge=60)
    health_check_interval_s: int = Field(10, ge=1)

    # Storage
    data_dir: Path = Path(".data")

    # Engines
    voice_engine: Literal["piper", "xtts"] = "piper"
    lipsync_engine: Literal["landmark", "wav2lip"] = "landmark"
    models_dir: Path = Path(".data/models")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # XTTS: GPT precision on CUDA (float32 keeps coqui-tts's exact codes) and how many
    # sentences decode together (0 = one at a time, coqui-tts's own path).
    xtts_precision: Literal["float32", "float16", "bfloat16"] = "float32"
    xtts_batch: int = Field(16, ge=0, le=64)
    # x264 preset of wav2lip renders: superfast and ultrafast render faster where the host is
    # short of cores (bench/results/wav2lip_h100.md), at larger files for the same quality.
    wav2lip_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast"] = "veryfast"
    # Measure every render (sync, voice likeness, intelligibility, background) after delivery.
    quality_report: bool = True

    # Limits
    max_text_chars: int = Field(1000, ge=1)
    max_sample_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_avatar_bytes: int = Field(100 * 1024 * 1024, ge=1024)
    min_sample_s: float = 2.0
    max_sample_s: float = 300.0
    max_avatar_s: float = 120.0
    max_avatar_pixels: int = 3840 * 2160
    # Address-space cap of a CPU engine's child process (MiB; 0: none): a file that decodes
    # to more ends that child, not the worker. GPU engines are not capped.
    engine_memory_mb: int = Field(6144, ge=0)
    output_fps: int = 25

    # Discord
    discord_token: SecretStr = SecretStr("")
    discord_api_base: str = "https://discord.com/api/v10"
    discord_gateway_url: str = "wss://gateway.discord.gg/"
    admin_user_ids: list[int] = []
    allow_by_default: bool = True
    daily_quota: int = Field(50, ge=0)
    max_concurrent: int = Field(3, ge=1)

    # HTTP API
    # Largest request body other than an upload (JSON, forms), refused before it is read.
    max_json_bytes: int = Field(64 * 1024, ge=1024)
    api_host: str = "127.0.0.1"
    api_port: int = 8080

    def prefixed(self, *parts: str) -> str:
        """Return a Redis key under this deployment's prefix."""
        return ":".join((self.key_prefix, *parts))
