"""A sweep's parameters: the notebook's ``parameters`` cell, and the search space given with ``-p``.

``-p NAME VALUES`` takes a comma-separated list (each value typed as papermill's own ``-p`` types
it: ``3`` an int, ``0.5`` a float, ``True`` a bool, anything else a string) or a range
``LOW:HIGH[:log]`` (both numbers; ints when both are ints) for ``--random`` and ``--optimize``.

Example:
    >>> parse_space([("lr", "0.001,0.01"), ("depth", "3,5")])
    {'lr': Choice(values=(0.001, 0.01)), 'depth': Choice(values=(3, 5))}
    >>> parse_space([("lr", "1e-4:1e-1:log")])["lr"]
    Range(low=0.0001, high=0.1, log=True, integer=False)
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import random as _random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbtrack.errors import NotebookError, UsageError

__all__ = ["Choice", "Range", "Space", "check_names", "grid_points", "notebook_parameters", "parse_space"]


@dataclass(frozen=True)
class Choice:
    """A parameter's listed values (a grid axis; categorical for the optimiser)."""

    values: tuple[Any, ...]


@dataclass(frozen=True)
class Range:
    """A parameter's numeric range, sampled (``--random``) or searched (``--optimize``)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False


#: name -> its values, in the order given on the command line.
Space = dict[str, "Choice | Range"]


def parse_value(text: str) -> Any:
    """One value typed as papermill's ``-p`` types it.

    Example:
        >>> [parse_value(v) for v in ("3", "0.5", "True", "None", "abc")]
        [3, 0.5, True, None, 'abc']
    """
    from nbtrack.replay.result import parse_value as typed

    return typed(text)


def _range(name: str, text: str) -> Range | None:
    """``LOW:HIGH[:log]`` as a range; None when the text is no range (a string with a colon)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] != "log"):
        return None
    low, high = parse_value(parts[0]), parse_value(parts[1])
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        return None
    log = len(parts) == 3
    if not (math.isfinite(low) and math.isfinite(high)) or low >= high or (log and low <= 0):
        raise UsageError(
            f"-p {name} {text}: a range needs LOW < HIGH (both > 0 with :log), e.g. -p {name} 1e-4:1e-1:log"
        )
    integer = isinstance(low, int) and isinstance(high, int)
    return Range(float(low), float(high), log, integer) if not integer else Range(low, high, log, True)


def parse_space(pairs: Iterable[tuple[str, str]]) -> Space:
    """The ``-p NAME VALUES`` pairs as a search space (a name given twice: its values are joined).

    Raises:
        UsageError: an empty list or list item, a bad range, or no ``-p`` at all.

    Example:
        >>> parse_space([("depth", "3"), ("depth", "5"), ("kind", "a,b")])
        {'depth': Choice(values=(3, 5)), 'kind': Choice(values=('a', 'b'))}
    """
    space: Space = {}
    for name, text in pairs:
        if not name.isidentifier():
            raise UsageError(f"-p {name!r}: a parameter name is a Python identifier, e.g. -p lr 0.01,0.1")
        found = _range(name, text.strip())
        if found is not None:
            if name in space:
                raise UsageError(f"-p {name}: give a range once, not beside other values of {name}")
            space[name] = found
            continue
        items = [item.strip() for item in text.split(",")]
        if not text.strip() or any(not item for item in items):
            raise UsageError(
                f"-p {name} {text!r}: an empty value; give a comma-separated list, e.g. 0.01,0.1"
            )
        before = space.get(name)
        if isinstance(before, Range):
            raise UsageError(f"-p {name}: give a range once, not beside other values of {name}")
        old = before.values if before is not None else ()
        space[name] = Choice(old + tuple(parse_value(item) for item in items))
    if not space:
        raise UsageError("give at least one parameter to sweep: -p NAME V1,V2 (e.g. -p lr 0.001,0.01)")
    return space


def check_names(space: Space, known: list[str] | None, where: str) -> None:
    """Refuse a name the notebook's ``parameters`` cell lacks (``known``; None: no such cell).

    Raises:
        UsageError: naming the unknown parameter and the ones the notebook has.

    Example:
        >>> check_names({"lr": Choice((1,))}, ["lr", "depth"], "train.ipynb")
        >>> check_names({"lr": Choice((1,))}, None, "train.ipynb")  # no parameters cell: no check
    """
    if known is None:
        return
    unknown = [name for name in space if name not in known]
    if unknown:
        have = ", ".join(known) or "none"
        raise UsageError(
            f"-p {unknown[0]}: {where} has no such parameter in its `parameters` cell (it has: {have}); "
            "check the name"
        )


def grid_points(space: Space, *, random: int | None = None, seed: int | None = None) -> list[dict[str, Any]]:
    """The trials' parameters: the cartesian product, or ``random`` points sampled from the space.

    A random sample of a space of lists draws distinct grid points while there are enough of them;
    ranges are drawn uniformly (log-uniformly with ``:log``). The same ``seed`` gives the same points.

    Raises:
        UsageError: ``random`` below 1, or a range in a grid (ranges need ``--random``/``--optimize``).

    Example:
        >>> grid_points({"a": Choice((1, 2)), "b": Choice(("x",))})
        [{'a': 1, 'b': 'x'}, {'a': 2, 'b': 'x'}]
        >>> len(grid_points({"lr": Range(1e-4, 1e-1, log=True)}, random=3, seed=7))
        3
    """
    if random is not None and random < 1:
        raise UsageError(f"--random {random}: give at least 1 trial")
    ranges = [name for name, axis in space.items() if isinstance(axis, Range)]
    if random is None:
        if ranges:
            raise UsageError(
                f"-p {ranges[0]}: a range has no grid; list values (-p {ranges[0]} 0.01,0.1) or sample "
                "it with --random N (or search it with --optimize)"
            )
        return [dict(zip(space, values, strict=True)) for values in itertools.product(*_lists(space))]
    rng = _random.Random(seed)
    if not ranges:
        grid = list(itertools.product(*_lists(space)))
        if random <= len(grid):
            return [dict(zip(space, values, strict=True)) for values in rng.sample(grid, random)]
    return [{name: _draw(rng, axis) for name, axis in space.items()} for _ in range(random)]


def _lists(space: Space) -> list[tuple[Any, ...]]:
    return [axis.values for axis in space.values() if isinstance(axis, Choice)]


def _draw(rng: _random.Random, axis: Choice | Range) -> Any:
    if isinstance(axis, Choice):
        return rng.choice(axis.values)
    if axis.integer:
        return rng.randint(int(axis.low), int(axis.high))
    if axis.log:
        return math.exp(rng.uniform(math.log(axis.low), math.log(axis.high)))
    return rng.uniform(axis.low, axis.high)


def describe(space: Space) -> dict[str, Any]:
    """The space as JSON-able data (the parent run's ``nbtrack.sweep`` tag).

    Example:
        >>> describe({"a": Choice((1, 2)), "lr": Range(1e-4, 0.1, log=True)})
        {'a': [1, 2], 'lr': {'low': 0.0001, 'high': 0.1, 'log': True, 'int': False}}
    """
    return {
        name: list(axis.values)
        if isinstance(axis, Choice)
        else {"low": axis.low, "high": axis.high, "log": axis.log, "int": axis.integer}
        for name, axis in space.items()
    }


def notebook_parameters(path: Path) -> list[dict[str, Any]]:
    """The notebook's ``parameters``-tagged cell as papermill reads it; [] when it has none.

    Each parameter: ``name``; ``type``, papermill's inferred type name (``int``, ``float``, ``str``,
    ``bool``, ``None`` when unknown, or the annotation written); ``default``, the Python value when
    papermill's default text is a literal, else that text; ``help``, the line's comment.

    Raises:
        NotebookError: the file is missing or not a notebook.

    Example:
        >>> notebook_parameters(Path("train.ipynb"))  # doctest: +SKIP
        [{'name': 'alpha', 'type': 'float', 'default': 0.5, 'help': 'learning rate'}]
    """
    if not Path(path).is_file():
        raise NotebookError(f"{path}: no such notebook; check the path")
    import papermill  # 1.5-2.5 s to import: only when a notebook is inspected

    try:
        found = papermill.inspect_notebook(str(path))
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise NotebookError(f"{path}: not a readable notebook ({why}); open and save it in Jupyter") from exc
    return [
        {
            "name": p["name"],
            "type": str(p.get("inferred_type_name")),
            "default": _literal(str(p.get("default", ""))),
            "help": str(p.get("help") or ""),
        }
        for p in found.values()
    ]


def _literal(text: str) -> Any:
    """``text`` as a Python literal when it is one, else the text itself.

    Example:
        >>> _literal("0.5"), _literal("'a'"), _literal("np.pi")
        (0.5, 'a', 'np.pi')
    """
    try:
        value = ast.literal_eval(text)
        json.dumps(value)  # a set or bytes literal is no value a form (or JSON) can hold
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return text
    return value
