"""A user's files: their TOML (scenarios, experiment specs, targets) and the directories they name.

Every way a file can fail to be read, or a directory to be made, becomes the caller's own error
class, with a message that names the path and says what to do, so each command line reports it in
one paragraph, exit 2.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


def read_toml(path: str | Path, error: type[Exception], how: str) -> dict[str, Any]:
    """The file's TOML tables, or ``error`` raised with a message naming ``path``.

    Args:
        path: the file.
        error: the exception class to raise (e.g. ScenarioError).
        how: what a good file looks like, ending each message ("save the scenario as UTF-8 TOML").
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise error(f"{path}: not valid TOML: {err}. Check quotes, brackets and '=' on that line.") from None
    except UnicodeDecodeError:
        raise error(f"{path}: not a text file in UTF-8; {how}.") from None
    except FileNotFoundError:
        raise error(f"{path}: no such file; {how}.") from None
    except OSError as err:
        raise error(f"{path}: cannot be read ({err.strerror or err}); {how}.") from None


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


def output_dir(path: str | Path, error: type[Exception], flag: str = "--out") -> Path:
    """Create the directory ``path`` (and its parents), or raise ``error`` naming ``flag``.

    Called before anything is simulated, so a path that cannot be used costs no run.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise error(f"{flag} {path}: a file of that name exists; give a directory.") from None
    except OSError as err:  # a parent that is a file, no permission, a read-only file system
        raise error(
            f"{flag} {path}: cannot create the directory ({err.strerror or err}); give one that can be created "
            "and written."
        ) from None
    return path
