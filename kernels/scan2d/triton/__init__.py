"""Triton kernels of the chunked selective scan (positions.py, scan_kernels.py) and their launcher (launch.py)."""
