"""A warm standby that follows a repository (`pitr restore --latest --follow`) and its promotion.

`follow` restores the latest state into a directory marked as a follower, then applies every
segment the repository publishes, checked as a restore checks it; `pitr get`/`export` read the
standby while it follows, every writer is refused. `promote` turns it into a writable store with
a new history.
"""

from pitr.follow.follower import LOCAL_INTERVAL, REMOTE_INTERVAL, FollowOptions, FollowStatus, follow
from pitr.follow.promote import Promoted, promote

__all__ = ["LOCAL_INTERVAL", "REMOTE_INTERVAL", "FollowOptions", "FollowStatus", "Promoted", "follow", "promote"]
