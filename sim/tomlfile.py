"""Reading a user's TOML file (a scenario, an experiment spec, a targets table) with one kind of error.

Every way the file can fail to be read becomes the caller's own error class, with a message that
names the file and says what to do, so each command line reports it in one paragraph, exit 2.
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
