"""Starts the engine process, waits until it is warm, and starts it again whenever it dies."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from .engine_process import READY_LINE
from .logs import logger
from .metrics import mark_process_dead

RESTART_PAUSE_S = 0.5


class EngineStartError(RuntimeError):
    """The engine process exited before it was ready; the message is its one-line reason."""


class EngineSupervisor:
    def __init__(self, socket_path: str, environment: dict[str, str] | None = None, start_timeout: float = 600) -> None:
        self.socket_path, self.start_timeout = socket_path, start_timeout
        self.environment = {**os.environ, **(environment or {})}
        self.process: subprocess.Popen | None = None
        self.stopping = False
        self.restarts = 0

    def start(self) -> None:
        """Start the engine process and return once it is ready; raises ``EngineStartError``."""
        self.launch()
        threading.Thread(target=self.watch, name="engine-supervisor", daemon=True).start()

    def launch(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "triplex.service.engine_process", self.socket_path],
            stdin=subprocess.PIPE,  # the engine process lives while this pipe is open
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.environment,
            text=True,
        )
        errors: list[str] = []
        forwarder = threading.Thread(target=forward, args=(process.stderr, errors), daemon=True)
        forwarder.start()
        line = process.stdout.readline()  # blocks until warm, or EOF when it exits
        if line.strip() != READY_LINE:
            process.wait()
            forwarder.join(timeout=5)
            reason = next(
                (e for e in reversed(errors) if e.startswith("triplex: error:")), errors[-1] if errors else ""
            )
            raise EngineStartError(reason.removeprefix("triplex: error: ") or f"exit status {process.returncode}")
        self.process = process

    def watch(self) -> None:
        while not self.stopping:
            process = self.process
            process.wait()
            mark_process_dead(process.pid)  # its queue-depth gauge no longer counts
            if self.stopping:
                return
            logger.error("the engine process exited (%s); starting it again", process.returncode)
            while not self.stopping:
                time.sleep(RESTART_PAUSE_S)
                try:
                    self.launch()
                    self.restarts += 1
                    break
                except EngineStartError as error:
                    logger.error("the engine process failed to start: %s", error)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self, timeout: float = 10) -> None:
        self.stopping = True
        if self.process is None:
            return
        self.process.stdin.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def forward(stream, lines: list[str]) -> None:
    """Pass the engine's log through to ours, keeping its last lines for an error message (which the
    supervisor reports itself, once)."""
    for line in stream:
        if not line.startswith("triplex: error:"):
            sys.stderr.write(line)
        lines.append(line.strip())
        del lines[:-20]
