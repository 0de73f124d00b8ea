"""boto3 client for the stack's S3 endpoint (S3Proxy locally, MinIO or AWS elsewhere)."""

from __future__ import annotations

import boto3
from botocore.config import Config

from coinpulse_common.settings import Settings, get_settings


def client(s: Settings | None = None):
    s = s or get_settings()
    return boto3.client(
        "s3",
        endpoint_url=s.s3,
        aws_access_key_id=s.s3_access_key,
        aws_secret_access_key=s.s3_secret_key,
        region_name=s.s3_region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                      connect_timeout=3, read_timeout=30),
    )
