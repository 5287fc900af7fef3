"""Counting finished Streamlit script runs of a browser page, for the browser benchmarks.

The app's ``data-test-script-state`` attribute is not enough: a busy browser can apply "running" and
"notRunning" in one render, so a short run leaves no trace in the page. The server says it in so many words
instead: every run ends with a ``script_finished`` ``ForwardMsg`` on the websocket, which :class:`RunCounter`
reads from Playwright's websocket events.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

CHROMIUM = "/usr/bin/chromium"


def table_only(show_table: bool, results: Path, table: Callable[[dict], str]) -> bool:
    """The start shared by the browser benchmarks: with ``--table`` print the README table from ``results`` and
    say there is nothing to run (True); else exit with a message when Debian's Chromium is missing."""
    if show_table:
        print(table(json.loads(results.read_text())))
        return True
    if not Path(CHROMIUM).is_file():
        sys.exit(f"{CHROMIUM} is missing (apt-get install chromium; `make test` does it)")
    return False

# a run interrupted by a rerun is followed by the run that counts
COMPLETE = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR}
SMALL = 256  # bytes: script_finished messages are tiny, deltas carrying charts are not parsed


class RunCounter:
    """``finished``: how many script runs of ``page`` (an async Playwright page) have finished so far."""

    def __init__(self, page):
        self.page, self.finished = page, 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload: str | bytes) -> None:
        if isinstance(payload, bytes) and len(payload) < SMALL:
            try:
                msg = ForwardMsg.FromString(payload)
            except Exception:  # noqa: BLE001 - not a ForwardMsg (another socket): nothing to count
                return
            if msg.WhichOneof("type") == "script_finished" and msg.script_finished in COMPLETE:
                self.finished += 1

    async def wait(self, before: int, chart: str | None, timeout_s: float) -> None:
        """Wait until a run has finished after ``before`` runs and, if given, the selector ``chart`` matches;
        raises ``TimeoutError`` after ``timeout_s`` seconds."""
        deadline = time.monotonic() + timeout_s
        while self.finished <= before:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no script run finished within {timeout_s:.0f} s")
            await asyncio.sleep(0.05)
        if chart is not None:
            from playwright.async_api import TimeoutError as PlaywrightTimeout

            try:
                await self.page.wait_for_selector(chart, timeout=max(1.0, deadline - time.monotonic()) * 1000)
            except PlaywrightTimeout as e:
                raise TimeoutError(f"no chart drawn within {timeout_s:.0f} s") from e
