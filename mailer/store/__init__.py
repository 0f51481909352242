"""The data model and the database it lives in (SQLite by default, PostgreSQL to scale out)."""

from mailer.store.engine import Database, open_database
from mailer.store.lookup import blast_lists, find_blast
from mailer.store.models import (
    Blast,
    BlastList,
    BlastStatus,
    Click,
    Delivery,
    DeliveryState,
    Event,
    Link,
    MailingList,
    Membership,
    Open,
    SenderWorker,
    ServiceInstance,
    Supporter,
    SupporterStatus,
    Suppression,
)

__all__ = [
    "Blast",
    "BlastList",
    "BlastStatus",
    "Click",
    "Database",
    "Delivery",
    "DeliveryState",
    "Event",
    "Link",
    "MailingList",
    "Membership",
    "Open",
    "SenderWorker",
    "ServiceInstance",
    "Supporter",
    "SupporterStatus",
    "Suppression",
    "blast_lists",
    "find_blast",
    "open_database",
]
