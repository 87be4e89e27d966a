"""How a configurable value is declared: one dataclass field says its key in the file, its
kind (what it accepts and how it is written back), its default and its command-line flag.

The value objects that hold settings (`Limits`, `BackoffPolicy`, `HealthThresholds`,
`Filters`, the sections of `WatchConfig`) declare their fields with `setting()` and call
`validate(self)` from `__post_init__`: that is the one place a value is checked. The config
file reader, the flags and the printer of the effective configuration are generic over these
declarations, so adding a key is adding one field.

A kind converts what a person wrote (`"1m30s"`, `"150%"`, a YAML list) into the value the code
uses, or raises `Invalid` with a predicate ("must be at least 1, not 0"). `validate` turns that
into `InvalidSetting`, which names the key; the file reader puts "<file>, line N: <section>."
in front of it, the flags "<flag> ": one wording everywhere.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from ffrtmp.durations import format_duration, parse_duration

# The largest values any setting takes, so that a value that passes `config check` is one
# SQLite can store (a signed 64-bit integer), the kernel accepts (cgroup files) and date
# arithmetic can use (a retention of 10^14 days overflows a datetime).
MAX_WHOLE_NUMBER = 2**63 - 1
MAX_DURATION_SECONDS = 100 * 365 * 86400  # a century
# cpu.max / cpu.cfs_quota_us refuse a quota above about 1.7e10 % of a core; no machine needs
# more than ten thousand cores' worth.
MAX_PERCENT_OF_CORE = 1_000_000


class Invalid(Exception):
    """A value a kind does not accept. `predicate` reads after the key's name; `index` is the
    position of the bad item in a list."""

    def __init__(self, predicate: str, index: int | None = None, subscript: bool = True) -> None:
        super().__init__(predicate)
        self.predicate = predicate
        self.index = index
        self.subscript = subscript  # False when the predicate names the item itself


class InvalidSetting(ValueError):
    """A setting that cannot be used: `key` is its name in the file, str() the sentence."""

    def __init__(
        self, key: str, predicate: str, index: int | None = None, subscript: bool = True
    ) -> None:
        self.key = key
        self.predicate = predicate
        self.index = index
        self.subject = key if index is None or not subscript else f"{key}[{index}]"
        super().__init__(f"{self.subject} {predicate}")


@dataclass(frozen=True, slots=True)
class Kind:
    """accept: what a person wrote -> the value (raises Invalid); show: the value -> plain data
    that `accept` reads back to the same value."""

    accept: Callable[[Any], Any]
    show: Callable[[Any], Any] = lambda value: value
    describe: str = "VALUE"  # the metavar of its flag
    choices: tuple[str, ...] | None = None
    many: bool = False  # a list: its flag may be repeated, and takes commas
    from_text: Callable[[str], Any] = lambda text: text  # a flag's or variable's text -> accept

    def accept_text(self, value: Any) -> Any:
        """accept() for values that may come as text (flags, environment variables). A list
        may be given item by item (a repeated flag), comma-separated, or both, as the original
        daemon's flags and environment files wrote lists: "ffmpeg,gst-launch-1.0"."""
        if self.many:
            items = [value] if isinstance(value, str) else list(value)
            value = [
                piece.strip()
                for item in items
                for piece in (item.split(",") if isinstance(item, str) else [item])
                if not isinstance(piece, str) or piece.strip()
            ]
        if isinstance(value, str):
            return self.accept(self.from_text(value))
        if isinstance(value, list | tuple):
            return self.accept([self.from_text(v) if isinstance(v, str) else v for v in value])
        return self.accept(value)


@dataclass(frozen=True, slots=True)
class Flag:
    """A command-line flag that overrides a setting; `param` is click's parameter name.
    `watch` also reads it from the environment variable `envvar` (FFRTMP_ and the flag's
    name) and, below that, from `original_envvar`: the name the original daemon's
    environment file gave it."""

    declaration: str
    help: str
    param: str = ""
    original_envvar: str | None = None
    aliases: tuple[str, ...] = ()  # other names click also accepts (a command's older name)

    @property
    def name(self) -> str:
        return self.declaration.split("/")[0]

    @property
    def envvar(self) -> str:
        return "FFRTMP_" + self.name.lstrip("-").replace("-", "_").upper()

    @property
    def param_name(self) -> str:
        return self.param or self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True, slots=True)
class Setting:
    """key: its name in the file. A value has a `kind`; a nested section names its settings
    class in `section` instead (`named`: a mapping of names to such sections; `flatten`: its
    keys sit in the parent's mapping)."""

    key: str
    kind: Kind | None = None
    flag: Flag | None = None
    section: type | None = None
    named: bool = False
    flatten: bool = False
    omit_empty: bool = False  # print only the keys that are set, and nothing when none is


def setting(
    key: str,
    kind: Kind | None = None,
    *,
    default: Any = MISSING,
    default_factory: Any = MISSING,
    flag: Flag | None = None,
) -> Any:
    """A dataclass field holding one value, read from the file under `key`."""
    meta = {"setting": Setting(key, kind, flag)}
    return field(default=default, default_factory=default_factory, metadata=meta)


def section(
    key: str,
    of: type,
    *,
    default_factory: Any = MISSING,
    default: Any = MISSING,
    named: bool = False,
    flatten: bool = False,
    omit_empty: bool = False,
) -> Any:
    """A dataclass field holding a nested settings object (or, `named`, a mapping of them)."""
    if default is MISSING and default_factory is MISSING:
        default_factory = of
    meta = {"setting": Setting(key, None, None, of, named, flatten, omit_empty)}
    return field(default=default, default_factory=default_factory, metadata=meta)


def setting_of(f: Field) -> Setting | None:
    return f.metadata.get("setting")


def declared(cls_or_obj: Any) -> list[tuple[Field, Setting]]:
    """The fields of a settings dataclass that are settings, in declaration order."""
    return [(f, s) for f in fields(cls_or_obj) if (s := setting_of(f)) is not None]


def validate(obj: Any) -> None:
    """Convert and check every setting of `obj` in place (from `__post_init__`)."""
    for f, s in declared(obj):
        if s.kind is None:
            continue
        try:
            value = s.kind.accept(getattr(obj, f.name))
        except Invalid as exc:
            raise InvalidSetting(s.key, exc.predicate, exc.index, exc.subscript) from None
        object.__setattr__(obj, f.name, value)


def show(value: Any) -> str:
    """A value as it appears in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else f"{value[:60]!r}... ({len(value)} characters)"
    if isinstance(value, int) and abs(value) > MAX_WHOLE_NUMBER:
        return "a number of more than 19 digits"  # str() of a 5,000-digit int even fails
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return str(value)


def seconds_text(seconds: float) -> str | float:
    """The shortest way an operator would write `seconds`, if it reads back exactly."""
    text = format_duration(seconds) if seconds else "0s"
    return text if parse_duration(text) == seconds else seconds


def number_text(value: float | None) -> float | int | None:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# --- kinds --------------------------------------------------------------------------------


def optional(kind: Kind) -> Kind:
    """`kind`, or None for "not set"."""
    return Kind(
        lambda v: None if v is None else kind.accept(v),
        lambda v: None if v is None else kind.show(v),
        kind.describe,
        kind.choices,
        kind.many,
        kind.from_text,
    )


UNLIMITED = "unlimited"


def _is_zero(value: Any) -> bool:
    """0, 0.0, "0", "0%", "0s": the original daemon's way to write "no limit"."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        text_ = value.strip().removesuffix("%")
        try:
            return float(text_) == 0
        except ValueError:
            try:
                return parse_duration(text_) == 0
            except ValueError:
                return False
    return False


def unlimited(kind: Kind, *, zero: bool = True) -> Kind:
    """`kind`, or None for "no limit", written "unlimited". Also read as no limit: null, an
    empty string (the original's `max_runtime: ""`) and, with `zero`, 0 (the original's
    `--cpu-quota 0`)."""

    def accept(value: Any) -> Any:
        if value is None or isinstance(value, str) and value.strip() in ("", UNLIMITED):
            return None
        if zero and _is_zero(value):
            return None
        return kind.accept(value)

    return Kind(
        accept,
        lambda v: UNLIMITED if v is None else kind.show(v),
        kind.describe,
        kind.choices,
        kind.many,
        kind.from_text,
    )


def empty_means(kind: Kind, value: Any) -> Kind:
    """`kind`, where an empty string (the original's `min_runtime: ""`) or null is `value`."""

    def accept(given: Any) -> Any:
        if given is None or isinstance(given, str) and not given.strip():
            return value
        return kind.accept(given)

    return Kind(accept, kind.show, kind.describe, kind.choices, kind.many, kind.from_text)


def _parses_as_duration(text: str) -> bool:
    try:
        parse_duration(text)
    except ValueError:
        return False
    return True


def duration(*, allow_zero: bool = False, at_least: float | None = None) -> Kind:
    """Seconds, written 500ms, 10s, 1m30s or as a plain number of seconds. `at_least`: the
    shortest a positive duration may be."""
    want = "a duration of zero or more" if allow_zero else "a positive duration"

    def accept(value: Any) -> float:
        seconds = None
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                seconds = parse_duration(value)
            except (ValueError, OverflowError):
                seconds = None
        if (
            seconds is not None
            and math.isfinite(seconds)
            and (seconds > 0 or allow_zero and seconds == 0)
        ):
            if seconds > MAX_DURATION_SECONDS:
                raise Invalid(f"must be at most 36500d (a century), not {show(value)}")
            if at_least is not None and seconds < at_least:
                raise Invalid(f"must be at least {format_duration(at_least)}, not {show(value)}")
            return float(seconds)
        malformed = isinstance(value, str) and not _parses_as_duration(value.strip().lstrip("-"))
        hint = " (write durations like 500ms, 10s or 1m30s)" if malformed else ""
        raise Invalid(f"must be {want}, not {show(value)}{hint}")

    return Kind(accept, seconds_text, "DURATION")


def whole_number(
    minimum: int, maximum: int | None = None, unit: str = "", ceiling: int = MAX_WHOLE_NUMBER
) -> Kind:
    """maximum: the range is named in every message; ceiling: only a value above it is told
    so (a bound no one reaches by choice)."""

    def accept(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(
                f"must be a whole number{' of' + unit if unit else ''}, not {show(value)}"
            )
        if maximum is None and value > ceiling:
            raise Invalid(f"must be at most {ceiling}{unit}, not {show(value)}")
        if maximum is not None and not minimum <= value <= maximum:
            raise Invalid(f"must be between {minimum} and {maximum}, not {show(value)}")
        if value < minimum:
            raise Invalid(f"must be at least {minimum}{unit}, not {show(value)}")
        return value

    describe = f"{minimum}-{maximum}" if maximum is not None else "N"
    return Kind(accept, describe=describe, from_text=_int_or_text)


def _int_or_text(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def _float_or_text(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def number(*, minimum: float, below: float | None = None) -> Kind:
    def accept(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"must be a number, not {show(value)}")
        try:
            value = float(value)
        except OverflowError:  # an int past what a float holds (SQLite's REAL is a double)
            raise Invalid(f"must be a finite number, not {show(value)}") from None
        if not math.isfinite(value):
            raise Invalid(f"must be a number, not {show(value)}")
        if below is not None and not minimum <= value < below:
            raise Invalid(f"must be at least {minimum:g} and below {below:g}, not {value:g}")
        if value < minimum:
            raise Invalid(f"must be at least {minimum:g}, not {value:g}")
        return float(value)

    return Kind(accept, number_text, "NUMBER", from_text=_float_or_text)


def _percent_of_core(value: Any) -> float:
    """Percent of one core; "150%" is accepted as well as 150."""
    number_ = value
    if isinstance(value, str):
        try:
            number_ = float(value.strip().removesuffix("%"))
        except ValueError:
            number_ = value
    if isinstance(number_, int | float) and number_ > MAX_PERCENT_OF_CORE:
        raise Invalid(
            f"must be at most {MAX_PERCENT_OF_CORE}% (ten thousand cores), not {show(value)}"
        )
    if (
        isinstance(number_, bool)
        or not isinstance(number_, int | float)
        or not number_ > 0  # before isfinite(), which a huge negative int overflows
        or not math.isfinite(number_)
    ):
        raise Invalid(f"must be a positive percentage of one core, not {show(value)}")
    return float(number_)


PERCENT_OF_CORE = Kind(_percent_of_core, number_text, "PERCENT")


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {show(value)}")
    return value


BOOLEAN = Kind(_boolean)


def choice(choices: Sequence[str]) -> Kind:
    options = tuple(choices)

    def accept(value: Any) -> str:
        if value not in options:
            raise Invalid(f"must be one of {', '.join(options)}, not {show(value)}")
        return value

    return Kind(accept, choices=options)


def text(predicate: Callable[[Any], bool], wanted: str) -> Kind:
    """A string that `predicate` accepts; `wanted` completes "must be …"."""

    def accept(value: Any) -> str:
        if not isinstance(value, str) or not predicate(value):
            raise Invalid(f"must be {wanted}, not {show(value)}")
        return value

    return Kind(accept, describe="TEXT")


COMMAND_NAME = text(
    lambda v: bool(v) and "/" not in v and "\0" not in v,
    "a command name (the basename of argv[0], without '/')",
)
USER_NAME = text(bool, "a user name")


def _uid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Invalid(f"must be a uid (a whole number of 0 or more), not {show(value)}")
    return value


UID = Kind(_uid)


def _parent(value: Any) -> str | int:
    """A parent's command name, or its pid as a number."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, str) and value and "/" not in value:
        return value
    raise Invalid(f"must be a command name or a pid, not {show(value)}")


PARENT = Kind(_parent)


def _absolute_path(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if not isinstance(value, str) or not value.startswith("/") or "\0" in value:
        raise Invalid(f"must be an absolute path, not {show(value)}")
    # normpath keeps a leading "//"; a folder test must not depend on how it was spelled.
    return "/" + posixpath.normpath(value).lstrip("/")


ABSOLUTE_PATH = Kind(_absolute_path, describe="PATH")
DIRECTORY = Kind(lambda v: Path(_absolute_path(v)), str, "PATH")


def _regex(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a regular expression, not {show(value)}")
    try:
        re.compile(value)
    except re.error as exc:
        raise Invalid(f"must be a regular expression, not {value!r} ({exc})") from None
    return value


REGEX = Kind(_regex, describe="REGEX")


def list_of(item: Kind, *, repeats: str = "drop") -> Kind:
    """A list of `item`s as a tuple. repeats: "drop" keeps the first of equal items, "refuse"
    names the repeated one."""

    def accept(value: Any) -> tuple:
        if value is None:
            return ()
        if not isinstance(value, list | tuple):
            raise Invalid(f"must be a list, not {show(value)}")
        items = []
        for index, raw in enumerate(value):
            try:
                converted = item.accept(raw)
            except Invalid as exc:
                raise Invalid(exc.predicate, index, exc.subscript) from None
            if converted in items:
                if repeats == "refuse":
                    raise Invalid(f"lists {converted!r} twice", index, subscript=False)
                continue
            items.append(converted)
        return tuple(items)

    return Kind(
        accept,
        lambda v: [item.show(x) for x in v],
        item.describe,
        item.choices,
        True,
        item.from_text,
    )
