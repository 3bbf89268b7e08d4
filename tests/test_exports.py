"""The public API is exactly what __all__ says (websockets/httpx habit)."""

from __future__ import annotations

import tastyrec
import tastyrec.events
import tastyrec.exceptions
import tastyrec.sim


def public_names(module: object) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("tastyrec")
        and not isinstance(value, type(tastyrec))
    }


def test_all_is_sorted_unique_and_importable():
    for module in (tastyrec, tastyrec.events, tastyrec.exceptions, tastyrec.sim):
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_all_covers_public_names():
    assert public_names(tastyrec) <= set(tastyrec.__all__)
    assert public_names(tastyrec.exceptions) == set(tastyrec.exceptions.__all__)


def test_every_exception_derives_from_the_root():
    for name in tastyrec.exceptions.__all__:
        assert issubclass(getattr(tastyrec.exceptions, name), tastyrec.TastyrecError)


def test_lazy_exports_match_all():
    assert set(tastyrec._EXPORTS) | {"__version__"} == set(tastyrec.__all__)
    for name in tastyrec.__all__:
        value = getattr(tastyrec, name)
        assert value is not None and name in dir(tastyrec)
