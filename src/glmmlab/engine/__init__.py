"""The numerical engine: pure array code, no I/O, no printing.

It may import numpy and scipy only, never ``glmmlab.services`` or ``glmmlab.interfaces``.
"""
