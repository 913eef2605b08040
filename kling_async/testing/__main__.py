"""``python -m kling_async.testing``: run the simulator until Ctrl-C or SIGTERM."""

from kling_async.testing.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
