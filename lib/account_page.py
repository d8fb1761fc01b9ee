"""The /me resource, composed from the modules that own each part: the overview of the caller's account (the
account, generation usage, recent saved designs, notifications) and closing the account with everything it owns.

It lives apart from lib.accounts so that the sign-in functions (sign-up, login, refresh), which load
lib.accounts, do not load designs, uploads, the catalog and Cloud Storage at their cold start.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from lib import accounts, interiors, notifications, quota, storage, uploads
from lib.answers import Answer, Timestamp
from lib.interiors import InteriorSummary
from lib.notifications import Notification

RECENT_SAVED = 6


class Usage(Answer):
    """The generation quota of the current period."""
    used: int = Field(description="Generations taken this period")
    limit: int = Field(description="Generations allowed per period")
    resets_at: Timestamp | None = Field(description="When the period ends; null before the first generation")


class MeAnswer(Answer):
    user: accounts.User
    usage: Usage
    recent_saved: list[InteriorSummary] = Field(description=f"Up to {RECENT_SAVED} saved designs, newest first")
    notifications: list[Notification] = Field(description="The 20 newest, newest first")
    unread_notifications: int = Field(description="How many notifications are unread (for a badge)")


def overview(user: dict[str, Any]) -> MeAnswer:
    saved = interiors.recent_saved(user["_id"], RECENT_SAVED)
    return MeAnswer(
        user=accounts.public_user(user), usage=Usage.model_validate(quota.usage(user["_id"])),
        recent_saved=storage.signed_links(lambda: [interiors.summary_view(d) for d in saved]),
        notifications=notifications.recent(user["_id"]),
        unread_notifications=notifications.unread_count(user["_id"]),
    )


def delete_account(user: dict[str, Any], body: accounts.DeleteAccountBody) -> None:
    """Delete the account once the current password checks out: the person's photos, designs and notifications
    are deleted (objects and documents), then the account is deactivated (lib.accounts.deactivate).

    The data goes first and every step is idempotent, so when one fails (storage down) the account is still
    active and the person can simply retry."""
    def delete_personal_data() -> None:
        uploads.delete_all_for_user(user["_id"])
        interiors.delete_all_for_user(user["_id"])
        notifications.delete_all_for_user(user["_id"])

    accounts.require_current_password(user, body.current_password, "Deleting the account")
    delete_personal_data()
    accounts.deactivate(user)
    delete_personal_data()  # again: what a request of this account still in flight created meanwhile
    accounts.audit.info("user %s deleted their account; photos and designs removed", user["_id"])
