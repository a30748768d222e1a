"""Code version and run-record helpers for the training stage (defined in olmpool.provenance)."""

from olmpool.provenance import code_version, write_json_atomic

__all__ = ["code_version", "write_json_atomic"]
