from __future__ import annotations

import pytest

from aioredstream import ArgumentError, Keys
from aioredstream._validate import check_name


def test_layout_without_namespace_matches_the_ruby_gem() -> None:
    keys = Keys()
    assert keys.stream("users") == "redstream:stream:users"
    assert keys.delay_stream("users") == "redstream:stream:users.delay"
    assert keys.offset("users", "indexer") == "redstream:offset:users:indexer"
    assert keys.lock("consumer:users:indexer") == "redstream:lock:consumer:users:indexer"
    assert keys.lock_notify("trimmer") == "redstream:lock:trimmer.notify"


def test_namespace_prefixes_every_key() -> None:
    keys = Keys("shop")
    assert keys.stream("users") == "shop:redstream:stream:users"
    assert keys.delay_stream("users") == "shop:redstream:stream:users.delay"
    assert keys.offset("users", "indexer") == "shop:redstream:offset:users:indexer"
    assert keys.lock("x") == "shop:redstream:lock:x"


@pytest.mark.parametrize(
    "bad", ["", "a:b", "a{b}", "a*", "a b", "a\nb", "x" * 257, "tab\t", "q?", "[x]", "\x00"]
)
def test_bad_names_are_refused_naming_the_value(bad: str) -> None:
    with pytest.raises(ArgumentError) as info:
        check_name(bad)
    if bad:
        assert repr(bad[:40]) in str(info.value)


@pytest.mark.parametrize("bad", [None, 1, b"users"])
def test_non_str_names_are_refused(bad: object) -> None:
    with pytest.raises(ArgumentError, match="must be a str"):
        check_name(bad)


def test_unicode_and_dots_are_fine() -> None:
    assert check_name("benutzer.ä-1") == "benutzer.ä-1"
    with pytest.raises(ArgumentError, match="namespace"):
        Keys("bad ns")


def test_backfill_checkpoint_key_follows_the_layout() -> None:
    assert Keys().backfill("users") == "redstream:backfill:users"
    assert Keys("shop").backfill("users") == "shop:redstream:backfill:users"
    assert Keys(hash_tags=True).backfill("users") == "redstream:backfill:{users}"
