"""``python -m kling_async.cli``: the same as ``kling-async``."""

from kling_async.cli import main

raise SystemExit(main())
