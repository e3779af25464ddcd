"""Log densities and devices.

The full-batch log density, the device mesh, multi-process start-up.
"""
