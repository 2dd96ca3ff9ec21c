import pytest

from escape_portal.cli import build_parser, human_bytes, parse_lifetime, table
from escape_portal.errors import InvalidRequest


def test_parse_lifetime() -> None:
    assert parse_lifetime(None) is None
    assert parse_lifetime("3600") == 3600
    assert parse_lifetime("30m") == 1800
    assert parse_lifetime("7d") == 7 * 86400
    with pytest.raises(InvalidRequest, match="not a lifetime"):
        parse_lifetime("soon")


def test_human_bytes_and_table() -> None:
    assert human_bytes(None) == "-"
    assert human_bytes(512) == "512 B"
    assert human_bytes(1536) == "1.5 KiB"
    text = table([("a", 1), ("bbb", None)], ["name", "n"])
    assert text.splitlines() == ["name  n", "----  -", "a     1", "bbb   -"]


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "find", "cta:*"],
        ["find", "cta:*", "--json"],
        ["--json", "--instance", "escape", "vo", "registry"],
        ["vo", "registry", "--instance", "escape", "--json"],
        ["--instance", "escape", "vo", "--json", "registry"],
    ],
)
def test_common_options_before_or_after_the_command(argv: list[str]) -> None:
    # argparse lets a sub-command's defaults overwrite what was given before it.
    args = build_parser().parse_args(argv)
    assert args.json is True
    assert args.instance == ("escape" if "--instance" in argv else None)


def test_common_options_default_when_not_given() -> None:
    args = build_parser().parse_args(["find", "cta:*"])
    assert args.json is False
    assert args.instance is None
