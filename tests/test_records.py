from __future__ import annotations

from typing import Any

import pytest

from aioredstream import Model, RecordError, Registry


class User(Model):
    def __init__(self, id: int) -> None:
        self.id = id


class ProductCategory(Model):
    pass


class Person(Model):
    pass


class Address(Model):
    pass


@pytest.mark.parametrize(
    ("cls", "name"),
    [(User, "users"), (ProductCategory, "product_categories"), (Person, "people"),
     (Address, "addresses")],
)  # fmt: skip
def test_model_stream_name_is_the_rails_table_name(cls: type[Model], name: str) -> None:
    assert cls.redstream_name() == name


def test_model_payload_is_the_id() -> None:
    assert User(7).redstream_payload() == {"id": 7}


def test_registry_makes_dicts_streamable() -> None:
    registry = Registry()
    registry.register(dict, name="users")
    spec = registry.resolve(dict)
    assert spec.name == "users"
    assert spec.payload({"id": 3, "x": 1}) == {"id": 3}


def test_registry_defaults_to_table_name_and_follows_the_mro() -> None:
    class Base:
        id = 1

    class ShopOrder(Base):
        pass

    registry = Registry()
    registry.register(Base, name=lambda cls: "orders", payload=lambda r: {"id": r.id, "v": 2})
    registry.register(ShopOrder)
    assert registry.resolve(ShopOrder).name == "shop_orders"
    registry.unregister(ShopOrder)
    assert registry.resolve(ShopOrder).name == "orders"
    assert registry.resolve(ShopOrder).payload(ShopOrder()) == {"id": 1, "v": 2}


def test_class_without_methods_raises_record_error_naming_it() -> None:
    class Plain:
        pass

    with pytest.raises(RecordError, match=r"index 4 of type .*Plain.*redstream_name") as info:
        Registry().resolve(Plain, 4)
    assert info.value.index == 4
    assert info.value.record_type is Plain


@pytest.mark.parametrize("name", ["", 5, "users.delay", "a:b"])
def test_bad_stream_names_from_classes_are_refused(name: Any) -> None:
    class Weird(Model):
        @classmethod
        def redstream_name(cls) -> str:
            return name  # type: ignore[no-any-return]

    with pytest.raises(RecordError, match="Weird"):
        Registry().resolve(Weird)
    with pytest.raises(RecordError):
        Registry().register(dict, name=name)
