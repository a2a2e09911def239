from __future__ import annotations

import inspect

import aioredstream
from aioredstream import errors


def test_all_lists_exactly_the_public_names() -> None:
    public = {n for n in vars(aioredstream) if not n.startswith("_")} - {"annotations"}
    modules = {name for name, value in vars(aioredstream).items() if inspect.ismodule(value)}
    assert set(aioredstream.__all__) == public - modules
    assert sorted(aioredstream.__all__) == aioredstream.__all__


def test_every_error_derives_from_redstream_error_and_is_exported() -> None:
    classes = [v for v in vars(errors).values() if inspect.isclass(v) and issubclass(v, Exception)]
    for cls in classes:
        assert issubclass(cls, errors.RedstreamError), cls
        assert cls.__doc__, f"{cls.__name__} is undocumented"
        assert getattr(aioredstream, cls.__name__) is cls
