"""Requests, queues and workers: the pipeline text → speech → lip-synced MP4 on Redis and ARQ."""
