"""Which S3 locations the function may read: the ``ALLOWED_BUCKETS`` allow-list.

``ALLOWED_BUCKETS`` is a comma-separated list of ``bucket`` or ``bucket/prefix`` entries. A key
is allowed when it starts with the prefix, character for character, exactly like the IAM
resource ``arn:aws:s3:::bucket/prefix*`` the template grants (so ``data/in`` also allows
``data/input2/...``; end a prefix with ``/`` to mean a folder). Empty or unset allows nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from mnist_serving.errors import Forbidden
from mnist_serving.request import validate_bucket

ENV_VAR = "ALLOWED_BUCKETS"


@dataclass(frozen=True)
class AllowList:
    """Parsed allow-list: ``(bucket, key prefix)`` pairs; an empty prefix means the bucket."""

    entries: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, value: str | None) -> AllowList:
        """Parse the env value; raises ValueError on an entry that is not ``bucket[/prefix]``."""
        entries = []
        for raw in (value or "").split(","):
            entry = raw.strip()
            if not entry:
                continue
            bucket, _, prefix = entry.partition("/")
            try:
                validate_bucket(bucket)
            except Exception as exc:
                raise ValueError(
                    f"{ENV_VAR}: {entry!r} is not 'bucket' or 'bucket/prefix'"
                ) from exc
            entries.append((bucket, prefix))
        return cls(tuple(entries))

    def allows(self, bucket: str, key: str) -> bool:
        """True when some entry names ``bucket`` and ``key`` starts with its prefix."""
        return any(bucket == b and key.startswith(p) for b, p in self.entries)

    def check(self, bucket: str, key: str) -> None:
        """Raise 403 unless ``s3://bucket/key`` is allowed."""
        if not self.entries:
            raise Forbidden(
                f"no bucket is allowed: {ENV_VAR} is empty, so this function reads nothing"
            )
        if not self.allows(bucket, key):
            raise Forbidden(
                f"s3://{bucket}/{key} is outside the buckets/prefixes this function "
                f"may read ({ENV_VAR})"
            )
