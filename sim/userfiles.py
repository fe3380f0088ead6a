"""A user's files: their TOML (scenarios, experiment specs, targets) and the directories they name.

Every way a file can fail to be read, or a directory to be made, becomes the caller's own error
class, with a message that names the path and says what to do, so each command line reports it in
one paragraph, exit 2.
"""

from __future__ import annotations

import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

# Terminal escape sequences (ESC [ ... letter, ESC ] ... BEL) first, then any other control character.
CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|[\x00-\x1f\x7f-\x9f]")


def clean_text(text: Any, limit: int = 80) -> str:
    """``text`` fit to show on a terminal or in a figure, at most ``limit`` characters (cut with an ellipsis).

    Control characters and terminal escapes are removed and whitespace runs become one space. A name
    from a user's file (a scenario's, a spec's) could otherwise move the cursor, recolour the
    terminal, or make a figure title a million characters wide.
    """
    text = " ".join(CONTROL.sub(" ", str(text)).split())
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "\u2026"


MAX_NAME = 100  # characters of a scenario's or spec's name: it titles figures and terminal lines


def check_name(value: Any, where: str, error: type[Exception]) -> str:
    """A name from a user's file, or ``error``: text of 1 to :data:`MAX_NAME` characters, no control characters."""
    if not isinstance(value, str):
        raise error(f"{where}: name = {clean_text(repr(value), 40)} must be a string.")
    if not value.strip() or len(value) > MAX_NAME or CONTROL.search(value):
        problem = (
            "is empty"
            if not value.strip()
            else f"has {len(value):,} characters"
            if len(value) > MAX_NAME
            else "holds control characters (a line break, tab or terminal escape)"
        )
        raise error(
            f"{where}: name = {clean_text(repr(value), 40)} {problem}; use plain text of 1 to {MAX_NAME} characters."
        )
    return value


MAX_KEY = 200  # characters: longer keys are no parameter or setting name, and are not echoed whole
BOM = b"\xef\xbb\xbf"


def read_toml(path: str | Path, error: type[Exception], how: str) -> dict[str, Any]:
    """The file's TOML tables, or ``error`` raised with a message naming ``path``.

    A UTF-8 byte-order mark (which some Windows editors write) is skipped, as most TOML readers do.

    Args:
        path: the file.
        error: the exception class to raise (e.g. ScenarioError).
        how: what a good file looks like, ending each message ("save the scenario as UTF-8 TOML").
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: no such file; {how}.") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, not a file; {how}.") from None
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err}); {how}.") from None
    try:
        text = data.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file in UTF-8; {how}.") from None
    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{path}: not valid TOML: {err}. Check quotes, brackets and '=' on that line.") from None
    except RecursionError:
        raise error(f"{path}: arrays or tables are nested too deeply to be a settings file; {how}.") from None
    _check_keys(tables, path, error, how)
    return tables


def named_file(name_or_path: str | Path, folder: Path, error: type[Exception], what: str) -> Path:
    """The file for a name (``folder/<name>.toml``) or a path, or ``error`` listing the names in ``folder``.

    A name is looked up in ``folder`` unless it is an existing file or ends in .toml; a directory of
    the same name (say, results left by ``--out baseline``) does not shadow it.

    Args:
        name_or_path: a name like "baseline" or a path to a .toml file.
        folder: where names are looked up.
        error: the exception class to raise (e.g. ScenarioError).
        what: what the file is, for the message ("scenario file", "trial spec").
    """
    path = Path(name_or_path)
    if path.suffix != ".toml" and not path.is_file():
        path = Path(folder) / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in Path(folder).glob("*.toml")))
        raise error(f"no {what} {str(path)!r}: give a path to a .toml file or one of the names in {folder}: {known}.")
    return path


def _check_keys(tables: dict[str, Any], path: Path, error: type[Exception], how: str) -> None:
    """Refuse keys too long to be a name, before a message would echo one whole."""
    stack: list[Any] = [tables]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if len(key) > MAX_KEY:
                    raise error(
                        f"{path}: a key of {len(key):,} characters ({clean_text(repr(key), 40)}) is too long to be "
                        f"a name; {how}."
                    )
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


_created: list[Path] = []  # directories output_dir made in this process, so a refusal can take them back


def remove_created() -> None:
    """Remove the directories :func:`output_dir` made that are still empty: a refused command leaves nothing.

    The command lines call it when they report a user mistake found after the output directory was
    checked (a setting checked only when the run starts, say).
    """
    for folder in sorted(set(_created), key=lambda p: len(p.parts), reverse=True):
        try:
            folder.rmdir()  # only if empty: never a file the command wrote or found
        except OSError:
            pass
    _created.clear()


def output_dir(path: str | Path, error: type[Exception], flag: str = "--out", files: tuple[str, ...] = ()) -> Path:
    """Create the directory ``path`` (and its parents) and check ``files`` can be written there, or raise ``error``.

    Called before anything is simulated, so a path that cannot be used costs no run: a file where
    the directory should be, no permission, a read-only file system, or a directory where one of
    ``files`` is to be written are each reported in one paragraph naming ``flag``.
    """
    if not str(path).strip():
        raise error(f"{flag} is empty: give the directory to write into, e.g. {flag} results/mine.")
    path = Path(path)
    try:
        _created.extend(p for p in (path, *path.parents) if not p.exists())
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise error(f"{flag} {path}: a file of that name exists; give a directory.") from None
    except OSError as err:  # a parent that is a file, no permission, a read-only file system
        raise error(
            f"{flag} {path}: cannot create the directory ({err.strerror or err}); give one that can be created "
            "and written."
        ) from None
    for name in files:
        if (path / name).is_dir():
            raise error(
                f"{flag} {path}: {name} is a directory, where the file {name} is to be written; move it away or "
                f"give another {flag}."
            )
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise error(
            f"{flag} {path}: cannot write into this directory ({err.strerror or err}); give one that can be written."
        ) from None
    return path
