"""boto3 client for the stack's S3 endpoint (S3Proxy locally, MinIO or AWS elsewhere)."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from coinpulse_common.settings import Settings, get_settings


def client(s: Settings | None = None) -> Any:  # boto3 has no type information (an S3 client)
    s = s or get_settings()
    return boto3.client(
        "s3",
        endpoint_url=s.s3,
        aws_access_key_id=s.s3_access_key,
        aws_secret_access_key=s.s3_secret_key,
        region_name=s.s3_region,
        # S3Proxy (like many S3-compatible servers) rejects the flexible-checksum headers newer boto3 sends by default
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                      response_checksum_validation="when_required", retries={"max_attempts": 5, "mode": "standard"},
                      connect_timeout=3, read_timeout=30),
    )
