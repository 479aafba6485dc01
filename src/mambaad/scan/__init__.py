"""Hybrid scanning (space-filling curve orders) and the selective scan."""

from mambaad.scan.orders import CURVES, inverse_orders, scan_orders
from mambaad.scan.selective_scan import list_backends, selective_scan, selective_scan_ref

__all__ = ["CURVES", "inverse_orders", "list_backends", "scan_orders", "selective_scan", "selective_scan_ref"]
