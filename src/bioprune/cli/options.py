"""CLI options generated from config dataclasses: each default and help text written once.

A command's options are the fields of a dataclass. The field's default is the option's
default; its help text and, when needed, its flag, short flag, choices and so on are
plain ``dataclasses.field`` metadata, so a library config (``FisherConfig``,
``TrainingConfig``...) carries them without importing anything from ``cli/``::

    @dataclass(frozen=True)
    class InfoOptions:
        corpus_dir: Path = field(metadata={"argument": True, "help": "A corpus directory."})
        plot: Path | None = field(default=None, metadata={"help": "Also write a PNG."})
        as_json: bool = field(default=False, metadata={"flag": "--json", "help": "Print JSON."})

A command function takes the dataclass as one parameter (annotated with the class) next
to ordinary typer parameters, and :func:`with_options` replaces that parameter by one
typer option per field::

    @with_options
    def info(opts: InfoOptions, verbose: bool = typer.Option(False, "--verbose")) -> None:
        ...  # opts is an InfoOptions built from the command line

    app.command("info")(info)

The metadata keys (all optional):

``help``
    The option's help text (typer/rich render it as before).
``flag``
    The flag when it is not ``--`` + the dashed field name (``"--json"``), or a
    boolean's pair (``"--fasta/--no-fasta"``).
``short``
    A short flag (``"-o"``).
``choices``
    The allowed values: checked before the dataclass is built; a value outside them is
    the one-line error ``--flag must be one of a, b, got 'x'`` (exit 2), as the
    commands always said it.
``argument``
    ``True``: a positional argument instead of an option.
``envvar``, ``hidden``, ``metavar``, ``show_default``
    Passed to ``typer.Option`` as they are.
``cli``
    ``False``: not on the command line (the field keeps its default).

A field without a default is a required option. Types come from the annotations
(``int``, ``float``, ``str``, ``bool``, ``Path``, ``X | None``, ``list[str] | None``).
Validation stays in the dataclass (one ``validate()`` called from ``__post_init__``,
raising :class:`bioprune.errors.ConfigError` with the field's name); when it fires inside
a command, the CLI prints the field's flag: ``--flag: reason`` (exit 2).

Converting a command, in minutes:

1. Move each ``name: T = typer.Option(default, "--flag", help=...)`` into a field of
   the config dataclass (or of a small ``XxxOptions`` dataclass beside the command when
   the option is the CLI's only: ``--out``, ``--overwrite``):
   ``name: T = field(default=default, metadata={"help": ...})``; add ``"flag"`` only
   when the flag is not ``--name-with-dashes``. ``typer.Option(...)`` (required) becomes
   a field without default (put it before the defaulted ones, or use
   ``field(kw_only=True)``).
2. Give the command one parameter ``opts: XxxOptions`` and decorate it with
   ``@with_options``; read ``opts.name`` where the body read ``name``.
3. Check that ``--help`` is unchanged: ``tests/test_cli_options.py`` keeps a snapshot of
   each converted command's options (``describe_command``); add your command to
   ``CONVERTED`` there and write the snapshot from the unconverted code first
   (``python -m tests.test_cli_options COMMAND``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Iterator
from typing import Any

import typer

from bioprune.cli.common import flag_names

__all__ = [
    "cli_fields",
    "describe_command",
    "flag_of",
    "option",
    "typer_parameter",
    "with_options",
]

#: The metadata keys this module reads (a typo in a key is an error, not ignored).
KEYS = frozenset(
    {"help", "flag", "short", "choices", "argument", "envvar", "hidden", "metavar",
     "show_default", "cli"}
)  # fmt: skip


def option(default: Any = dataclasses.MISSING, *, help: str, **meta: Any) -> Any:
    """``dataclasses.field(default=default, metadata={"help": help, **meta})``: shorter for a
    dataclass of CLI-only options (a library config writes the ``field`` itself)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("a mutable default: use dataclasses.field(default_factory=...)")
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def is_options(annotation: object) -> bool:
    """Whether a parameter annotated with ``annotation`` is expanded into options."""
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def cli_fields(cls: type) -> Iterator[dataclasses.Field]:
    """The fields of ``cls`` that are on the command line (init fields without ``cli=False``).

    In field order, except that a class attribute ``cli_order`` (field names) puts those
    fields first, in its order: a config inheriting shared options from a base class
    still lists its own required options first in ``--help``.
    """
    fields = list(dataclasses.fields(cls))
    order = {name: i for i, name in enumerate(getattr(cls, "cli_order", ()))}
    fields.sort(key=lambda f: order.get(f.name, len(order)))  # stable: the rest keep theirs
    for f in fields:
        unknown = set(f.metadata) - KEYS
        if unknown:
            raise TypeError(f"{cls.__name__}.{f.name}: unknown option metadata {sorted(unknown)}")
        if f.init and f.metadata.get("cli", True):
            yield f


def flag_of(f: dataclasses.Field) -> str:
    """The primary flag of a field: ``max_tokens`` -> ``--max-tokens``; ``flag`` metadata wins."""
    flag = f.metadata.get("flag")
    return flag.split("/")[0] if flag else "--" + f.name.replace("_", "-")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return ...  # required


def typer_parameter(f: dataclasses.Field, annotation: object) -> inspect.Parameter:
    """A keyword parameter whose default is the ``typer.Option`` (``typer.Argument``) of ``f``."""
    meta = f.metadata
    extra = {k: meta[k] for k in ("envvar", "hidden", "metavar", "show_default") if k in meta}
    if meta.get("argument"):
        info = typer.Argument(_default(f), help=meta.get("help"), **extra)
    else:
        decls = [meta.get("flag") or "--" + f.name.replace("_", "-")]
        if "short" in meta:
            decls.append(meta["short"])
        info = typer.Option(_default(f), *decls, help=meta.get("help"), **extra)
    return inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation
    )


def _check_choices(cls: type, values: dict[str, Any]) -> None:
    for f in cli_fields(cls):
        choices = f.metadata.get("choices")
        value = values.get(f.name)
        if choices is not None and value is not None and value not in choices:
            raise ValueError(
                f"{flag_of(f)} must be one of {', '.join(map(str, choices))}, got {value!r}"
            )


def with_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Expand each parameter of ``func`` annotated with a dataclass into its fields' options.

    The returned function has the signature typer reads (``__signature__``): the other
    parameters of ``func`` as they were, and one keyword parameter per field in place of
    the dataclass parameter. Called by typer with every value, it checks ``choices``,
    builds the dataclass (its own validation runs there) and calls ``func`` with it; a
    :class:`~bioprune.errors.ConfigError` about a field names the field's flag.
    """
    hints = typing.get_type_hints(func)
    groups: dict[str, type] = {}
    params: list[inspect.Parameter] = []
    flags: dict[str, str] = {}
    for p in inspect.signature(func).parameters.values():
        cls = hints.get(p.name)
        if not is_options(cls):
            params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                                    annotation=hints.get(p.name, p.annotation)))  # fmt: skip
            continue
        groups[p.name] = cls
        field_hints = typing.get_type_hints(cls)
        for f in cli_fields(cls):
            params.append(typer_parameter(f, field_hints[f.name]))
            flags[f.name] = flag_of(f)
    names = [p.name for p in params]
    clash = {n for n in names if names.count(n) > 1}
    if clash:
        raise TypeError(f"{func.__qualname__}: options defined twice: {sorted(clash)}")

    @functools.wraps(func)
    def command(**values: Any) -> Any:
        with flag_names(flags):
            for name, cls in groups.items():
                own = {f.name: values.pop(f.name) for f in cli_fields(cls)}
                _check_choices(cls, own)
                values[name] = cls(**own)
            return func(**values)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def describe_command(command: Any) -> list[dict[str, Any]]:
    """The options of a click/typer command as plain data (name, flags, default, help, ...):
    what must not change when a command is converted (compared by the tests)."""
    rows = []
    for p in command.params:
        default = p.default
        rows.append(
            {
                "name": p.name,
                "kind": p.param_type_name,
                "opts": list(p.opts),
                "secondary_opts": list(p.secondary_opts),
                "default": repr(default) if callable(default) else default,
                "required": p.required,
                "help": getattr(p, "help", None),
                "envvar": p.envvar,
                "hidden": getattr(p, "hidden", False),
                "is_flag": getattr(p, "is_flag", False),
                "multiple": p.multiple,
                "nargs": p.nargs,
                "show_default": getattr(p, "show_default", None),
            }
        )
    return rows
