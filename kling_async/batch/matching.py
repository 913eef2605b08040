"""Is this task the one a lost POST created? The package's one matcher, re-exported.

`matches_body` is `kling_async.reconcile.matches_submission`: the same prompt, every input
URL the task echoes among the body's, every echoed setting equal (an input it does not
echo is unknown, not a mismatch). Submissions and the batch's resume use it alike.
"""

from __future__ import annotations

from ..reconcile import ECHOED_SETTINGS, matches_submission

__all__ = ["ECHOED_SETTINGS", "matches_body"]

#: The one matcher (`kling_async.reconcile.matches_submission`), under the batch's name.
matches_body = matches_submission
