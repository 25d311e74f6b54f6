"""Progress of long work: a tqdm bar on a terminal, a plain line every half minute elsewhere (logs, CI),
nothing when the caller asks for none (``triplex --quiet``)."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

PLAIN_EVERY_S = 30.0


class PlainProgress:
    """tqdm's ``update``/``set_postfix``/``close`` as a line now and then."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done, self.postfix = 0, ""
        self.started = self.printed = time.monotonic()

    def update(self, count: int = 1) -> None:
        self.done += count
        if time.monotonic() - self.printed >= PLAIN_EVERY_S:
            self.report()

    def set_postfix(self, **values: object) -> None:
        self.postfix = ", ".join(f"{name} {value}" for name, value in values.items())

    def report(self) -> None:
        self.printed = time.monotonic()
        rate = self.done / max(self.printed - self.started, 1e-9)
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(
            f"{self.desc}: {self.done}/{self.total} {plural(self.unit)}{share}, {rate:.1f}/s{extra}",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.done and time.monotonic() - self.started >= PLAIN_EVERY_S:
            self.report()

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def progress(total: int, desc: str, unit: str, enabled: bool = True, leave: bool = True) -> tqdm | PlainProgress:
    if not enabled:
        return tqdm(total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, leave=leave)
    return PlainProgress(total, desc, unit)
