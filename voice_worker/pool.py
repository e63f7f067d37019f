"""The voice pool's launcher: K voice processes on one port, each with its own listening socket.

    python -m voice_worker.pool --host 0.0.0.0 --port 8001 --workers 2

`uvicorn --workers K` shares one listening socket among its processes, and whichever process wakes
first takes the connection: a process already busy with calls is often the one awake, so new calls
pile onto it while another idles (measured: four calls, all four in one of two processes). Here each
process binds the port itself with SO_REUSEPORT and the kernel spreads new connections over the
sockets by their addresses' hash. A process that dies is started again; its unfinished outcomes are
in the journal, which any process replays.
"""

from __future__ import annotations

import argparse
import multiprocessing
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess

APP = "voice_worker.voice_app:app_factory"
RESTART_PAUSE_SECONDS = 1.0


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(host: str, port: int, log_level: str) -> None:
    """One voice process: its own socket on the shared port, one uvicorn server, one event loop."""
    import uvicorn

    config = uvicorn.Config(APP, factory=True, host=host, port=port, ws_per_message_deflate=False, log_level=log_level)
    uvicorn.Server(config).run(sockets=[listening_socket(host, port)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="K voice processes serving /ws on one port (SO_REUSEPORT)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=2, help="processes; one per core the calls may use")
    parser.add_argument("--log-level", default="warning", help="uvicorn's own log level (the app's is LOG_LEVEL)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")

    spawn = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = spawn.Process(target=serve, args=(args.host, args.port, args.log_level), daemon=False)
        process.start()
        return process

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    processes = [start() for _ in range(args.workers)]
    while not stopping:
        time.sleep(0.2)
        for i, process in enumerate(processes):
            if not process.is_alive() and not stopping:
                print(f"voice process {process.pid} exited with {process.exitcode}; starting another", file=sys.stderr)
                time.sleep(RESTART_PAUSE_SECONDS)
                processes[i] = start()
    for process in processes:
        process.terminate()  # SIGTERM: uvicorn finishes its open connections' shutdown
    for process in processes:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
