"""``python -m bench.nullsmtp PORT``: an aiosmtpd server on 127.0.0.1 that accepts and discards.

Only used when Postfix's smtp-sink cannot be had; it is several times slower
than smtp-sink, so the figures measured against it are lower bounds.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class Discard:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK discarded"


def main(argv: list[str]) -> int:
    controller = Controller(Discard(), hostname="127.0.0.1", port=int(argv[0]))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    controller.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
