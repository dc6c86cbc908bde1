"""Fields of a fit's record computed when first read: :class:`Deferred` holds how to compute a value, and
:class:`DeferredField` is the descriptor of a frozen dataclass field that may hold one (the field's value is then
computed on the first read and kept). A fit's Satterthwaite degrees of freedom (a numeric Hessian of the deviance,
a third of a small linear mixed model's fit) are such a field: every reader (the JSON, the text, the web, the
pandas views) sees the same numbers as when they were computed during the fit, and a fit whose tests nobody reads
does not pay for them.

Copying a record field by field (the fitted model of the services wraps the engine's record) goes through
:func:`raw_fields`, which hands on a pending value without computing it."""

from __future__ import annotations

import dataclasses
import functools
import threading
from typing import Any, Callable

_MISSING = object()


class Deferred:
    """A value computed by ``compute()`` once, when :meth:`get` is first called (thread-safe); ``then(f)`` is
    the deferred ``f(value)``, computed from the same one computation."""

    def __init__(self, compute: Callable[[], Any]):
        self._compute: Callable[[], Any] | None = compute
        self._value: Any = _MISSING
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._value is _MISSING:
            with self._lock:
                if self._value is _MISSING:
                    assert self._compute is not None
                    self._value = self._compute()
                    self._compute = None  # what it held (the fit's cross-products) can go
        return self._value

    def then(self, f: Callable[[Any], Any]) -> "Deferred":
        return Deferred(lambda: f(self.get()))


class DeferredField:
    """A dataclass field's descriptor whose value may be a :class:`Deferred`: read, it is computed (once, then
    kept in its place). ``default``: the field's default (none when not given). Installed by
    :func:`deferred_fields`."""

    def __init__(self, default: Any = _MISSING):
        self._default = _MISSING if default is dataclasses.MISSING else default
        self._slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._slot = f"_{name}_value"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # the class's attribute: the dataclass's default, or none
            if self._default is _MISSING:
                raise AttributeError(self._slot)
            return self._default
        value = obj.__dict__[self._slot]
        if isinstance(value, Deferred):
            value = value.get()
            obj.__dict__[self._slot] = value
        return value

    def __set__(self, obj: Any, value: Any) -> None:  # the frozen dataclass's __init__ sets fields through this
        obj.__dict__[self._slot] = value

    def raw(self, obj: Any) -> Any:
        """The field's value as held: a pending :class:`Deferred` is not computed."""
        return obj.__dict__[self._slot]


def deferred_fields(*names: str) -> Callable[[type], type]:
    """A class decorator, put above ``@dataclass``: the dataclass's fields ``names`` may be given a
    :class:`Deferred` (their types and defaults stay as declared)."""

    def install(cls: type) -> type:
        for name in names:
            descriptor = DeferredField(cls.__dataclass_fields__[name].default)  # type: ignore[attr-defined]
            descriptor.__set_name__(cls, name)
            setattr(cls, name, descriptor)
        return cls

    return install


def raw_fields(obj: Any, cls: type) -> dict[str, Any]:
    """The ``__init__`` fields of dataclass ``cls`` read from ``obj`` as held (pending values stay pending)."""
    return {name: getattr(obj, name) if descriptor is None else descriptor.raw(obj)
            for name, descriptor in _init_fields(cls)}


@functools.lru_cache(maxsize=None)
def _init_fields(cls: type) -> tuple[tuple[str, "DeferredField | None"], ...]:
    """The ``__init__`` fields of dataclass ``cls`` and each one's :class:`DeferredField` (None for a plain field):
    looked up once per class, not for every fitted model."""
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        descriptor = next((c.__dict__[f.name] for c in cls.__mro__ if f.name in c.__dict__), None)
        out.append((f.name, descriptor if isinstance(descriptor, DeferredField) else None))
    return tuple(out)
