"""Hybrid scanning (space-filling curve orders) and the selective scan."""

from mambaad.scan.selective_scan import list_backends, selective_scan, selective_scan_ref

__all__ = ["list_backends", "selective_scan", "selective_scan_ref"]
