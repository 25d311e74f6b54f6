"""What the CLI and the bulk jobs share about files: where output may go, and one JSON line of input."""

from __future__ import annotations

import json
from pathlib import Path


class FileError(ValueError):
    """A path or a line that cannot be used; the message says which and what to do."""


def output_folder(path: str | Path, flag: str = "--output") -> Path:
    """A folder to write into: not a file, and its parent exists."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise FileError(f"{flag} '{path}' is a file, not a folder; give a folder path")
    if not folder.parent.is_dir():
        raise FileError(f"{flag} '{path}': the folder '{folder.parent}' does not exist; create it first")
    return folder


def output_file(path: str | None, flag: str = "--output") -> None:
    """A file to write (``-`` or None: standard output): not a folder, its folder existing."""
    if path is None or path == "-":
        return
    target = Path(path)
    if target.is_dir():
        raise FileError(f"{flag} '{path}' is a folder; give a file path")
    if not target.parent.is_dir():
        raise FileError(f"{flag} '{path}': the folder '{target.parent}' does not exist; create it first")


def json_line(raw: bytes, number: int) -> object:
    """One line of a JSON lines file (the first may start with a byte-order mark), parsed."""
    try:
        return json.loads(raw.decode("utf-8-sig" if number == 1 else "utf-8"))
    except UnicodeDecodeError as error:
        raise FileError(f"not UTF-8 (byte {error.start})") from None
    except json.JSONDecodeError as error:
        raise FileError(f"not valid JSON ({error.msg})") from None
