"""Keys and budgets for a replay, created from the trace via the ledger admin API.

Each (org, team, user) in the trace gets a user and an API key; the header's
budgets are set on their teams (or orgs). ``org_suffix`` renames every org
(``acme`` -> ``acme-r1a2b``) so repeated replays against one long-running
ledger start from fresh budgets and an empty cache tenant. The result is a
``KeyBook`` saved as JSON (mode 0600: it holds secrets) that ``bench replay
--keys`` reads back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rationer.errors import FailedPrecondition, InvalidArgument
from rationer.platform.secrets import write_private
from rationer.replay.trace import Trace

NANO = 1_000_000_000


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    secret: str
    org_id: str
    team_id: str
    user_id: str


@dataclass
class KeyBook:
    ledger: str
    org_ids: dict[str, str] = field(default_factory=dict)  # trace org -> ledger org id
    keys: dict[str, KeyEntry] = field(default_factory=dict)  # "org/team/user" -> key

    @staticmethod
    def slot(org: str, team: str, user: str) -> str:
        return f"{org}/{team}/{user}"

    def key_for(self, org: str, team: str, user: str) -> KeyEntry:
        entry = self.keys.get(self.slot(org, team, user))
        if entry is None:
            raise FailedPrecondition(
                f"no API key for {self.slot(org, team, user)}; provision the trace (--provision) "
                "or add it to the keys file"
            )
        return entry

    def save(self, path: Path) -> None:
        write_private(path, json.dumps({"ledger": self.ledger, "org_ids": self.org_ids,
                                        "keys": {k: asdict(v) for k, v in self.keys.items()}}, indent=1))  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> KeyBook:
        try:
            raw = json.loads(path.read_text())
            keys = {k: KeyEntry(**v) for k, v in raw["keys"].items()}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"keys file {path} is unreadable ({exc}); re-run with --provision") from None
        return cls(str(raw.get("ledger", "")), dict(raw.get("org_ids", {})), keys)


def principals(trace: Trace) -> list[tuple[str, str, str]]:
    return sorted({(ln.org, ln.team, ln.user) for ln in trace.lines})


async def provision(trace: Trace, ledger: str, admin_token: str, *, org_suffix: str = "") -> KeyBook:
    """Create (or reuse, creation is idempotent) orgs, teams, users; mint keys; set budgets."""
    from services.ledger.admin_client import LedgerAdminClient

    book = KeyBook(ledger)
    teams: dict[tuple[str, str], str] = {}
    async with LedgerAdminClient(ledger, admin_token) as admin:
        for org, team, user in principals(trace):
            if org not in book.org_ids:
                book.org_ids[org] = (await admin.create_org(f"{org}{org_suffix}")).id
            if (org, team) not in teams:
                teams[(org, team)] = (await admin.create_team(book.org_ids[org], team)).id
            u = await admin.create_user(teams[(org, team)], user)
            created = await admin.create_key(user_id=u.id, name=f"replay {trace.header.name}")
            book.keys[KeyBook.slot(org, team, user)] = KeyEntry(
                created.key.key_id, created.secret, book.org_ids[org], teams[(org, team)], u.id
            )
        for b in trace.header.budgets:
            if b.org not in book.org_ids:
                continue  # a budget for an org with no traffic in this trace
            kind, scope_id = ("team", teams.get((b.org, b.team), "")) if b.team else ("org", book.org_ids[b.org])
            if not scope_id:
                continue
            await admin.set_budget(kind, scope_id, unit="usd", period=b.period,
                                   hard_limit=max(round(b.usd * NANO), 1), soft_fraction=b.soft)  # fmt: skip
    return book
