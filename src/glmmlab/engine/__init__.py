"""The numerical engine: pure array code, no I/O, no printing.

It may import numpy and scipy only, never ``glmmlab.services`` or ``glmmlab.interfaces``. The one exception is
pandas, imported inside ``GlmmResult``'s accessors (``params``, ``conf_int``, ``ranef``, ...) when they are used.
"""
