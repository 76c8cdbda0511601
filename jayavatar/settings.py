"""Settings: the one configuration object, built once in each entry point and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from jayavatar import catalog
from jayavatar.cores import usable_cores


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
    # How this worker's host is named in /admin stats and on the dashboard (default: host name).
    worker_name: str = Field("", max_length=64)

    # Storage: "local" keeps everything under data_dir; "s3" keeps it in a bucket that every
    # host reaches, with a bounded per-host read cache (docs: README "Several machines").
    data_dir: Path = Path(".data")
    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str = ""  # empty: AWS S3 itself
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr = SecretStr("")
    s3_secret_access_key: SecretStr = SecretStr("")
    s3_prefix: str = ""  # a folder inside the bucket, e.g. "jayavatar/"
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    # The read cache of S3 objects on this host (default: <data_dir>/cache), least recently
    # used entries go first; entries used in the last cache_min_age_s seconds are kept.
    cache_dir: Path | None = None
    cache_max_bytes: int = Field(20 * 1024**3, ge=0)
    cache_min_age_s: int = Field(1800, ge=0)

    # Engines: names of rows of the engine table (`jayavatar.catalog.ENGINES`)
    voice_engine: str = "piper"
    lipsync_engine: str = "landmark"
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
    # API processes (0, the default: one per usable core, at most 4). Several share their
    # Prometheus counters through a per-start folder (api/metrics.py). On two cores two
    # processes answered a burst of 200 submissions with a p99 of 191-246 ms against 236-304 ms
    # for one (bench/results/queue_cpu.md); each costs about 75 MB.
    api_workers: int = Field(0, ge=0, le=64)

    @field_validator("voice_engine")
    @classmethod
    def _voice_engine(cls, name: str) -> str:
        """Accept only voice engines of the engine table."""
        return catalog.engine(name, "voice").name

    @field_validator("lipsync_engine")
    @classmethod
    def _lipsync_engine(cls, name: str) -> str:
        """Accept only lip-sync engines of the engine table."""
        return catalog.engine(name, "lipsync").name

    def engine_name(self, kind: str) -> str:
        """The engine configured for a worker `kind` ("voice" or "lipsync")."""
        return self.voice_engine if kind == "voice" else self.lipsync_engine

    def api_processes(self, workers: int | None = None) -> int:
        """Return how many API processes to run (`workers` or `api_workers`; 0: a core each, ≤4)."""
        wanted = self.api_workers if workers is None else workers
        return wanted or min(usable_cores(), 4)

    def prefixed(self, *parts: str) -> str:
        """Return a Redis key under this deployment's prefix."""
        return ":".join((self.key_prefix, *parts))
