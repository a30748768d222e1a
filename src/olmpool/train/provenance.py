"""Code version and run-record helpers for the training stage."""

from olmpool.atomic import write_json_atomic
from olmpool.provenance import code_version

__all__ = ["code_version", "write_json_atomic"]
