"""The one way every registry of the library takes a new entry.

Rules (:func:`rules.register`), optimizers (:func:`optim.register`), norms
(:func:`norms.register`) and model kinds (:func:`models.register`) all register alike::

    register("name", obj, **spec)      # adds obj under "name" and returns it
    @register("name", **spec)          # the same, as a decorator
    @register                          # a class, under its class name

Each module checks its own entries (a rule's state and knobs, an optimizer class, a norm
factory, a model factory) and says what is wrong before anything is stored.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, cast, overload

_T = TypeVar("_T")


class Register(Protocol):
    """The type of every ``register``: typed so that a decorated function keeps its type."""

    @overload
    def __call__(self, name: str, /, **spec: Any) -> Callable[[_T], _T]: ...

    @overload
    def __call__(self, name: str, obj: _T, /, **spec: Any) -> _T: ...

    @overload
    def __call__(self, name: type[_T], /) -> type[_T]: ...


def entry(add: Callable[..., None]) -> Register:
    """Turn ``add(name, obj, **spec)`` (which checks ``obj`` and stores it) into a
    ``register`` that takes the three forms above and returns what it registered."""

    @functools.wraps(add)
    def register(name: Any, obj: Any = None, /, **spec: Any) -> Any:
        if obj is None and isinstance(name, type):  # @register on a class, or register(cls)
            name, obj = name.__name__, name
        if obj is None:
            def decorator(target: Any) -> Any:
                add(name, target, **spec)
                return target

            return decorator
        add(name, obj, **spec)
        return obj

    return cast(Register, register)


__all__ = ["entry", "Register"]
