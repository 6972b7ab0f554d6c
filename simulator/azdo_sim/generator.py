"""Deterministic generator of realistic simulated Azure DevOps organizations.

`generate(world, org_name, size=..., seed=...)` builds one organization in `world` (plus its Entra
groups) in two phases:

1. **Baseline** (before the audit history window, auditing switched off): users, service accounts,
   service principals, projects, teams, custom groups, Entra groups, memberships and entitlements.
2. **History** (the last ~120 days, auditing on): a scripted stream of realistic changes
   (`mutations.random_ops` applied one by one by `mutations.apply_ops`) while the clock moves
   forward, so the audit log describes changes that really happened and the final state is their
   result. Events older than 90 days exist, so the retention window matters.

Determinism: the same `seed`, `size` and organization name in a world created with the same
`World(seed=...)` (and used the same way before) give the same organization: identical descriptors,
storage keys, ids and edges, across processes (nothing depends on set/hash order). Timestamps are
relative to an anchor, the start of the current UTC day (stable within a day).

Bulk memberships use `OrgState._link` (no cycle check, O(1)) under a strict level rule: a group
only ever receives members of a *lower* level, so the baseline graph is acyclic by construction:

    level 0  users, service accounts, service principals
    level 1  Entra groups (aadgp) — users only, set on the Entra side and mirrored in ADO
    level 2  teams, project custom groups "tier 1"
    level 3  project custom groups "tier 2" (may contain tier-1 groups), organization custom groups
    level 4  built-in project groups (Project Administrators, Contributors, Readers, Build Admins)
    level 5  Project Valid Users (contains the project's built-in groups, linked by the state)
    level 6  Project Collection Valid Users / Administrators / Build Service Accounts

so the deepest nesting chain is user → aadgp → custom → Contributors → Project Valid Users →
Project Collection Valid Users (5 edges).
"""

from __future__ import annotations

import itertools
import random
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .state import NEVER, Clock, Identity, OrgState, World

_ROLES = ("contributors", "readers", "project_administrators", "build_administrators")


@dataclass(frozen=True, slots=True)
class SizeSpec:
    users: int  # human users (aad members/guests + msa); service identities come on top
    projects: int
    service_principals: int
    entra_groups: int
    org_groups: int  # custom organization-scope vssgp groups
    custom_groups_per_project: float  # mean, long-tailed
    extra_teams_per_project: float  # mean, long-tailed, on top of the default team
    projects_per_user: float  # mean number of projects a user works in, long-tailed
    admins: int  # Project Collection Administrators besides the owner
    audit_events: int  # approximate number of history operations (each writes >= 1 event)
    history_days: int = 120


SIZES: dict[str, SizeSpec] = {
    "tiny": SizeSpec(users=10, projects=2, service_principals=1, entra_groups=1, org_groups=1,
                     custom_groups_per_project=0.5, extra_teams_per_project=0.5, projects_per_user=1.3,
                     admins=1, audit_events=25),
    "small": SizeSpec(users=200, projects=10, service_principals=3, entra_groups=5, org_groups=3,
                      custom_groups_per_project=1.0, extra_teams_per_project=1.0, projects_per_user=2.0,
                      admins=3, audit_events=300),
    "medium": SizeSpec(users=2_000, projects=60, service_principals=12, entra_groups=25, org_groups=12,
                       custom_groups_per_project=1.2, extra_teams_per_project=1.5, projects_per_user=3.0,
                       admins=6, audit_events=1_500),
    "large": SizeSpec(users=20_000, projects=500, service_principals=60, entra_groups=120, org_groups=50,
                      custom_groups_per_project=1.2, extra_teams_per_project=1.5, projects_per_user=6.5,
                      admins=12, audit_events=3_000),
    "xl": SizeSpec(users=100_000, projects=3_000, service_principals=200, entra_groups=400, org_groups=150,
                   custom_groups_per_project=1.2, extra_teams_per_project=1.2, projects_per_user=10.0,
                   admins=20, audit_events=5_000),
}

FIRST_NAMES = (
    "Aaliyah", "Adam", "Aisha", "Alejandro", "Alex", "Amara", "Amelia", "Ana", "Andrei", "Anil", "Anna",
    "Arjun", "Ben", "Bianca", "Carlos", "Chen", "Chloe", "Chris", "Daniel", "David", "Deepa", "Diego",
    "Elena", "Emily", "Emma", "Ethan", "Fatima", "Felix", "Grace", "Hana", "Hannah", "Hiro", "Ines",
    "Isaac", "Ivan", "Jack", "James", "Jana", "Javier", "Jin", "Julia", "Kai", "Karim", "Kate", "Laura",
    "Leo", "Liam", "Lina", "Lucas", "Maya", "Mei", "Mia", "Mohammed", "Nadia", "Noah", "Nora", "Olga",
    "Omar", "Oscar", "Pablo", "Priya", "Rahul", "Rosa", "Ryan", "Sam", "Sara", "Sofia", "Tariq", "Tom",
    "Uma", "Victor", "Wei", "Yara", "Yusuf", "Zoe",
)
LAST_NAMES = (
    "Abe", "Adams", "Ahmed", "Ali", "Andersen", "Bauer", "Brown", "Chen", "Clark", "Costa", "Cruz",
    "Das", "Davis", "Dubois", "Evans", "Fischer", "Garcia", "Gomez", "Green", "Gupta", "Hall", "Hansen",
    "Hernandez", "Ito", "Jensen", "Johnson", "Kim", "Klein", "Kowalski", "Kumar", "Lee", "Lopez",
    "Martin", "Meyer", "Miller", "Moore", "Muller", "Nakamura", "Nguyen", "Novak", "Okafor", "Olsen",
    "Patel", "Perez", "Petrov", "Popescu", "Reddy", "Rossi", "Santos", "Sato", "Schmidt", "Silva",
    "Singh", "Smith", "Suzuki", "Tanaka", "Taylor", "Thomas", "Wagner", "Walker", "Wang", "Weber",
    "White", "Williams", "Wilson", "Wong", "Yamamoto", "Yilmaz", "Young", "Zhang",
)
PARTNER_DOMAINS = ("contractors.example", "partner-one.example", "agency.example", "vendorco.example")
MSA_DOMAINS = ("outlook.com", "hotmail.com", "live.com", "gmail.com")
PROJECT_WORDS = (
    "Apollo", "Atlas", "Aurora", "Beacon", "Cascade", "Catalyst", "Comet", "Compass", "Cosmos", "Delta",
    "Echo", "Falcon", "Fusion", "Galaxy", "Harbor", "Horizon", "Ion", "Jade", "Keystone", "Lumen",
    "Meridian", "Mosaic", "Nebula", "Nimbus", "Nova", "Orbit", "Orion", "Pegasus", "Phoenix", "Pioneer",
    "Polaris", "Prism", "Pulse", "Quantum", "Quasar", "Radius", "Summit", "Tempest", "Titan", "Vertex",
    "Vortex", "Zenith",
)
PROJECT_AREAS = (
    "Web", "Mobile", "API", "Platform", "Data", "Billing", "Identity", "Infra", "Portal", "Analytics",
    "Payments", "Search", "Gateway", "Core", "Docs", "Tools", "ML", "Edge", "Ops", "Integrations",
)
TEAM_NAMES = (
    "Platform", "Frontend", "Backend", "QA", "Mobile", "Data", "SRE", "Security", "Payments", "Growth",
    "Design", "Release", "Architecture", "Support", "Performance", "Localization", "Integrations",
    "Infrastructure", "Reporting", "Onboarding",
)
CUSTOM_GROUP_NAMES = (
    "Release Approvers", "Security Champions", "Testers", "Deployers", "Service Owners", "Code Reviewers",
    "On-Call", "Auditors", "Contractors", "Pipeline Maintainers", "Repo Admins", "Stakeholders",
)
ORG_GROUP_NAMES = (
    "Security Reviewers", "Org Auditors", "Release Managers", "Engineering Managers", "Contractors",
    "Compliance", "Architects", "Platform Owners", "Support Engineers", "Licensing Admins",
)
ENTRA_GROUP_NAMES = (
    "SG-Engineering", "SG-Developers", "SG-QA", "SG-Contractors", "SG-Product", "SG-Data",
    "SG-Platform", "SG-Security", "SG-Support", "SG-Design", "SG-Finance-Dev", "SG-Interns",
)
PROJECT_DESCRIPTIONS = (
    "", "Main product repository and pipelines.", "Internal tooling.", "Customer-facing services.",
    "Shared libraries and SDKs.", "Infrastructure as code.", "Experimental work.",
)


class _ManualClock(Clock):
    """A clock the generator sets explicitly, so timestamps do not depend on how long generation took."""

    def __init__(self, at: datetime) -> None:
        super().__init__()
        self._at = at

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = at

    def advance(self, delta: timedelta) -> None:
        self._at += delta


class _Weighted:
    """Weighted sampling with precomputed cumulative weights (O(log n) per draw)."""

    def __init__(self, items: Sequence[str], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1] if self.cum else 0.0

    def pick(self, rng: random.Random) -> str:
        return self.items[bisect_right(self.cum, rng.random() * self.total)]


def _long_tail(rng: random.Random, mean: float, cap: int) -> int:
    """An integer >= 0 with the given mean and a Pareto(2) tail (mean of paretovariate(2) - 1 is 1)."""
    return min(cap, int((rng.paretovariate(2.0) - 1.0) * mean + rng.random()))


def _zipf_weights(n: int, s: float = 1.0) -> list[float]:
    return [1.0 / (i + 1) ** s for i in range(n)]


def _between(rng: random.Random, start: datetime, end: datetime, skew: float = 1.0) -> datetime:
    """A time in [start, end]; skew > 1 favours recent times (organizations grow)."""
    span = (end - start).total_seconds()
    if span <= 0:
        return end
    return start + timedelta(seconds=span * rng.random() ** (1.0 / skew))


class _Builder:
    def __init__(self, world: World, org_name: str, spec: SizeSpec, rng: random.Random,
                 clock: _ManualClock, anchor: datetime) -> None:
        self.world = world
        self.spec = spec
        self.rng = rng
        self.clock = clock
        self.anchor = anchor
        self.history_start = anchor - timedelta(days=spec.history_days)
        age_days = 365 * (2 + rng.random() * 4)
        self.org_created = self.history_start - timedelta(days=age_days)
        clock.set(self.org_created)
        self.org: OrgState = world.new_org(org_name, created=self.org_created)
        self.org.auditing_enabled = False  # baseline predates the retained history
        slug = "".join(ch for ch in org_name.lower() if ch.isalnum()) or "org"
        self.domain = f"{slug}.com"
        self.tenant_domain = f"{slug}.onmicrosoft.com"
        self.used_names: dict[str, int] = {}
        self.humans: list[Identity] = []
        self.aad_users: list[Identity] = []
        self.project_ids: list[str] = []
        self.project_users: dict[str, list[str]] = {}
        self.group_members: dict[str, list[str]] = {}  # descriptor -> direct members we linked

    # ---- helpers -----------------------------------------------------------------------
    def link(self, container: str, member: str) -> None:
        """Bulk edge (see the level rule in the module docstring); duplicates are harmless."""
        if member in self.org.down.get(container, ()):
            return
        self.org._link(container, member)
        self.group_members.setdefault(container, []).append(member)

    def unique_handle(self, first: str, last: str) -> str:
        base = f"{first}.{last}".lower()
        n = self.used_names.get(base, 0) + 1
        self.used_names[base] = n
        return base if n == 1 else f"{base}{n}"

    # ---- subjects ----------------------------------------------------------------------
    def make_users(self) -> None:
        rng, org, spec = self.rng, self.org, self.spec
        for i in range(spec.users):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            handle = self.unique_handle(first, last)
            roll = rng.random()
            # Fixed kinds for the first users so even `tiny` has every kind: owner (Entra member),
            # a guest, a Microsoft account.
            roll = {0: 0.0, 1: 0.85, 2: 0.95}.get(i, roll)
            display = f"{first} {last}"
            if roll < 0.80:
                user = org.add_user(kind="aad", display_name=display,
                                    principal_name=f"{handle}@{self.domain}", meta_type="member")
            elif roll < 0.92:
                partner = rng.choice(PARTNER_DOMAINS)
                mail = f"{handle}@{partner}"
                upn = f"{handle}_{partner}#EXT#@{self.tenant_domain}"
                user = org.add_user(kind="aad", display_name=display, principal_name=upn, mail=mail,
                                    meta_type="guest")
            else:
                user = org.add_user(kind="msa", display_name=display,
                                    principal_name=f"{handle}@{rng.choice(MSA_DOMAINS)}")
            self.humans.append(user)
            if user.origin == "aad":
                self.aad_users.append(user)
        org.owner_key = self.humans[0].storage_key

    def make_projects(self) -> None:
        rng, org, spec = self.rng, self.org, self.spec
        names: list[str] = []
        seen: set[str] = set()
        while len(names) < spec.projects:
            word = rng.choice(PROJECT_WORDS)
            name = word if rng.random() < 0.3 else f"{word}.{rng.choice(PROJECT_AREAS)}"
            if len(names) >= len(PROJECT_WORDS) * len(PROJECT_AREAS) // 2:
                name = f"{name}-{len(names)}"
            if name.lower() not in seen:
                seen.add(name.lower())
                names.append(name)
        times = sorted(_between(rng, self.org_created, self.history_start, skew=1.5)
                       for _ in range(spec.projects))
        # The first project exists from the organization's first day (the one made at sign-up).
        times[0] = self.org_created + timedelta(hours=1)
        for name, at in zip(names, times, strict=True):
            self.clock.set(at)
            vis = "public" if rng.random() < 0.04 else "private"
            proj = org.create_project(name, description=rng.choice(PROJECT_DESCRIPTIONS), visibility=vis,
                                      actor_key=org.owner_key)
            self.project_ids.append(proj.id)
            self.project_users[proj.id] = []

    def make_service_identities(self) -> None:
        rng, org = self.rng, self.org
        pcbsa = org.org_groups["project_collection_build_service_accounts"]
        self.clock.set(self.org_created)
        pcbs = org.add_user(kind="svc", display_name=f"Project Collection Build Service ({org.name})",
                            principal_name=org.id, svc_identifier=f"{org.id}:Build:{org.id}")
        self.link(pcbsa, pcbs.descriptor)
        for pid in self.project_ids:
            proj = org.projects[pid]
            self.clock.set(proj.last_update_time)
            svc = org.add_user(kind="svc", display_name=f"{proj.name} Build Service ({org.name})",
                               principal_name=pid, svc_identifier=f"{org.id}:Build:{pid}")
            self.link(pcbsa, svc.descriptor)
        self.sps: list[Identity] = []
        for i in range(self.spec.service_principals):
            self.clock.set(_between(rng, self.org_created, self.history_start))
            purpose = ("Deploy", "Automation", "Terraform", "Backup", "Monitoring", "Sync")[i % 6]
            sp = org.add_service_principal(display_name=f"sp-{purpose.lower()}-{i + 1:03d}")
            self.sps.append(sp)

    # ---- groups ------------------------------------------------------------------------
    def make_groups(self) -> None:
        rng, org, spec = self.rng, self.org, self.spec
        self.teams_by_project: dict[str, list[str]] = {}
        self.custom1: dict[str, list[str]] = {}
        self.custom2: dict[str, list[str]] = {}
        self.empty_groups: set[str] = set()
        for pid in self.project_ids:
            proj = org.projects[pid]
            self.clock.set(proj.last_update_time)
            default = org.teams[proj.default_team_id]
            teams = [default.group_descriptor]
            n_extra = _long_tail(rng, spec.extra_teams_per_project, 60)
            for j in range(n_extra):
                base = TEAM_NAMES[j % len(TEAM_NAMES)]
                name = base if j < len(TEAM_NAMES) else f"{base} {j // len(TEAM_NAMES) + 1}"
                self.clock.set(_between(rng, proj.last_update_time, self.history_start))
                team = org.create_team(pid, name, description=f"{name} team of {proj.name}.", audit=False)
                teams.append(team.group_descriptor)
            self.teams_by_project[pid] = teams
            n_custom = _long_tail(rng, spec.custom_groups_per_project, 30)
            c1: list[str] = []
            c2: list[str] = []
            for j in range(n_custom):
                base = CUSTOM_GROUP_NAMES[j % len(CUSTOM_GROUP_NAMES)]
                name = base if j < len(CUSTOM_GROUP_NAMES) else f"{base} {j // len(CUSTOM_GROUP_NAMES) + 1}"
                self.clock.set(_between(rng, proj.last_update_time, self.history_start))
                g = org.create_group(display_name=name, description=f"{name} of {proj.name}.",
                                     project_id=pid, audit=False)
                # Tier 2 groups nest tier 1 groups of the same project (one more nesting level).
                (c2 if c1 and rng.random() < 0.3 else c1).append(g.descriptor)
                if rng.random() < 0.08:
                    self.empty_groups.add(g.descriptor)
            self.custom1[pid], self.custom2[pid] = c1, c2
        self.org_custom: list[str] = []
        for j in range(spec.org_groups):
            base = ORG_GROUP_NAMES[j % len(ORG_GROUP_NAMES)]
            name = base if j < len(ORG_GROUP_NAMES) else f"{base} {j // len(ORG_GROUP_NAMES) + 1}"
            self.clock.set(_between(rng, self.org_created, self.history_start))
            g = org.create_group(display_name=name, description=f"{name} (organization).", audit=False)
            self.org_custom.append(g.descriptor)
        self.entra: list[tuple[str, str]] = []  # (descriptor, oid)
        for j in range(spec.entra_groups):
            base = ENTRA_GROUP_NAMES[j % len(ENTRA_GROUP_NAMES)]
            name = base if j < len(ENTRA_GROUP_NAMES) else f"{base}-{j // len(ENTRA_GROUP_NAMES) + 1}"
            self.clock.set(_between(rng, self.org_created, self.history_start))
            g = org.create_group(display_name=name, description=f"Entra security group {name}.",
                                 entra_oid=self.world.new_guid(), audit=False)
            self.entra.append((g.descriptor, g.origin_id))

    def entra_link(self, group: tuple[str, str], user: Identity) -> None:
        """Both sides agree: Entra membership and its materialized ADO edge."""
        desc, oid = group
        self.world.entra_members.setdefault(oid, set()).add(user.origin_id)
        self.link(desc, user.descriptor)

    # ---- memberships -------------------------------------------------------------------
    def make_memberships(self) -> None:
        """Direct memberships, in a fixed order of random draws (the same seed gives the same org)."""
        pca, owner = self.make_collection_admins()
        popularity, choosers = self.project_choosers()
        entra_only = self.make_entra_members()
        self.make_project_work(popularity, choosers, entra_only)
        self.make_org_custom_members()
        self.make_nesting_and_admins(owner)
        self.make_grants_into_projects(popularity, pca)

    def make_collection_admins(self) -> tuple[str, Identity]:
        """Project Collection Administrators: the owner and a few others; (the group, the owner)."""
        rng, org, spec = self.rng, self.org, self.spec
        pca = org.org_groups["project_collection_administrators"]
        owner = self.humans[0]
        self.link(pca, owner.descriptor)
        admins = [owner, *rng.sample(self.humans[1:], min(spec.admins, len(self.humans) - 1))]
        for a in admins[1:]:
            self.link(pca, a.descriptor)
        return pca, owner

    def project_choosers(self) -> tuple[_Weighted, dict[str, _Weighted]]:
        """(project popularity, per project a weighted choice of the group a person joins)."""
        rng, org = self.rng, self.org
        n_proj = len(self.project_ids)
        # Project popularity: Zipf over a shuffled order, so old projects are not always the big ones.
        order = self.project_ids[:]
        rng.shuffle(order)
        popularity = _Weighted(order, _zipf_weights(n_proj, 0.9))
        # Per project: weighted group choice (teams long-tailed; Contributors/Readers common).
        choosers: dict[str, _Weighted] = {}
        for pid in self.project_ids:
            proj = org.projects[pid]
            items: list[str] = []
            weights: list[float] = []
            teams = self.teams_by_project[pid]
            for i, t in enumerate(teams):
                items.append(t)
                weights.append(1.6 / (i + 1))
            for role, w in (("contributors", 1.2), ("readers", 0.6), ("project_administrators", 0.08),
                            ("build_administrators", 0.05)):
                items.append(proj.role_groups[role])
                weights.append(w)
            for i, g in enumerate(self.custom1[pid] + self.custom2[pid]):
                if g not in self.empty_groups:
                    items.append(g)
                    weights.append(0.35 / (i + 1))
            choosers[pid] = _Weighted(items, weights)
        return popularity, choosers

    def make_entra_members(self) -> set[str]:
        """Entra group members; returns the users in the organization only through an Entra group."""
        rng = self.rng
        # Entra groups: Zipf sizes; ~1/3 of Entra users are in one, some only through it.
        entra_pick = _Weighted([str(i) for i in range(len(self.entra))], _zipf_weights(len(self.entra)))
        entra_only: set[str] = set()
        if self.entra:
            for user in self.aad_users[1:]:
                r = rng.random()
                if r < 0.35:
                    k = 1 + _long_tail(rng, 0.5, len(self.entra) - 1)
                    for _ in range(k):
                        self.entra_link(self.entra[int(entra_pick.pick(rng))], user)
                    if r < 0.08:
                        entra_only.add(user.descriptor)
            # At least one member and one user who is in the organization only through that group.
            last = self.aad_users[-1]
            if len(self.aad_users) >= 3 and last.descriptor not in entra_only:
                self.entra_link(self.entra[0], self.aad_users[1])
                self.entra_link(self.entra[0], last)
                entra_only.add(last.descriptor)
        return entra_only

    def make_project_work(self, popularity: _Weighted, choosers: dict[str, _Weighted], entra_only: set[str]) -> None:
        """Each person joins a long-tailed number of popular projects' groups."""
        rng, spec = self.rng, self.spec
        n_proj = len(self.project_ids)
        for user in self.humans:
            if user.descriptor in entra_only:
                continue
            # Long-tailed, but even the busiest person works directly in at most ~50 projects.
            m = max(1, min(n_proj, 1 + _long_tail(rng, spec.projects_per_user - 1, 49)))
            chosen: list[str] = []
            for _ in range(m * 2):  # bounded retries for distinct projects
                pid = popularity.pick(rng)
                if pid not in chosen:
                    chosen.append(pid)
                    if len(chosen) == m:
                        break
            for pid in chosen:
                self.project_users[pid].append(user.descriptor)
                chooser = choosers[pid]
                self.link(chooser.pick(rng), user.descriptor)
                if rng.random() < 0.3:
                    self.link(chooser.pick(rng), user.descriptor)

    def make_org_custom_members(self) -> None:
        rng = self.rng
        # Org custom groups: a few users each (long-tailed), some empty.
        for i, g in enumerate(self.org_custom):
            size = 0 if rng.random() < 0.1 else 1 + _long_tail(rng, max(2.0, 40.0 / (i + 1)),
                                                                  len(self.humans))
            for user in rng.sample(self.humans, min(size, len(self.humans))):
                self.link(g, user.descriptor)

    def make_nesting_and_admins(self, owner: Identity) -> None:
        """Groups nested into groups, project administrators and team administrators."""
        rng, org = self.rng, self.org
        # Nesting: teams are in Contributors (state); tier-1 groups into tier-2 / role groups, etc.
        roles = _ROLES
        for pid in self.project_ids:
            proj = org.projects[pid]
            c2 = self.custom2[pid]
            for g in self.custom1[pid]:
                if c2 and rng.random() < 0.5:
                    self.link(rng.choice(c2), g)
                elif rng.random() < 0.8:
                    self.link(proj.role_groups[rng.choices(roles, (5, 3, 1, 1))[0]], g)
            for g in c2:
                if rng.random() < 0.85:
                    self.link(proj.role_groups[rng.choices(roles, (5, 3, 1, 1))[0]], g)
            # Project administrators: one or two people who work in the project (or the owner).
            pa = proj.role_groups["project_administrators"]
            pool = self.project_users[pid] or [owner.descriptor]
            for _ in range(1 + (rng.random() < 0.4)):
                self.link(pa, rng.choice(pool))
            # Team admins: a member of the team when there is one, else a project person.
            for t in self.teams_by_project[pid]:
                team = org.teams[org.get(t).storage_key]
                members = [d for d in self.group_members.get(t, ()) if org.identities[d].subject_kind == "user"]
                for _ in range(1 + (rng.random() < 0.25)):
                    team.admins.add(rng.choice(members or pool))

    def make_grants_into_projects(self, popularity: _Weighted, pca: str) -> None:
        """Organization groups, Entra groups and service principals granted into projects' groups."""
        rng, org, roles = self.rng, self.org, _ROLES
        # Org custom groups and Entra groups are granted into a few projects' groups.
        for g in self.org_custom:
            for _ in range(_long_tail(rng, 1.5, 10)):
                pid = popularity.pick(rng)
                self.link(org.projects[pid].role_groups[rng.choices(roles, (3, 4, 1, 1))[0]], g)
        for i, (desc, _oid) in enumerate(self.entra):
            for _ in range(1 + _long_tail(rng, 1.0, 10)):
                pid = popularity.pick(rng)
                proj = org.projects[pid]
                r = rng.random()
                if r < 0.4:
                    target = rng.choice(self.teams_by_project[pid])
                elif r < 0.55 and self.custom2[pid]:
                    target = rng.choice(self.custom2[pid])
                elif r < 0.9:
                    target = proj.role_groups[rng.choices(roles, (5, 3, 1, 1))[0]]
                else:
                    target = rng.choice(self.org_custom) if self.org_custom else proj.role_groups["readers"]
                self.link(target, desc)
            if i == 0 and len(self.entra) >= 5:
                self.link(pca, desc)  # an "admins" Entra group, as many organizations have
        # Service principals: a couple of groups each (deploy SP is a collection admin).
        for i, sp in enumerate(self.sps):
            if i == 0:
                self.link(pca, sp.descriptor)
            for _ in range(1 + _long_tail(rng, 1.0, 5)):
                proj = org.projects[popularity.pick(rng)]
                self.link(proj.role_groups[rng.choice(("contributors", "build_administrators"))],
                          sp.descriptor)

    # ---- entitlements ------------------------------------------------------------------
    def make_entitlements(self) -> None:
        rng, org = self.rng, self.org
        stale = self.history_start  # latest "stale" access: 120 days before the anchor (> 90 days)
        for i, user in enumerate(self.humans):
            created = self.org_created + timedelta(minutes=5) if i == 0 else \
                _between(rng, self.org_created, self.history_start, skew=1.4)
            user.created = created
            r, s, a = rng.random(), rng.random(), rng.random()
            # Fixed (licence, status, last access) rolls for the first users so `tiny` shows each case:
            # owner Basic/active/recent, stakeholder stale, VS subscriber, pending, disabled, none.
            r, s, a = {0: (0.0, 0.0, 0.0), 1: (0.75, 0.0, 0.85), 2: (0.85, 0.0, 0.5),
                       3: (0.0, 0.93, 0.0), 4: (0.0, 0.99, 0.7), 5: (0.98, 0.0, 0.94)}.get(i, (r, s, a))
            if r < 0.70:
                lic = ("express", "account", "none")
            elif r < 0.84:
                lic = ("stakeholder", "account", "none")
            elif r < 0.92:
                lic = ("advanced", "msdn", "enterprise")
            elif r < 0.95:
                lic = ("professional", "msdn", "professional")
            elif r < 0.97:
                lic = ("advanced", "account", "none")
            else:
                lic = ("none", "none", "none")
            status = "active" if s < 0.90 else ("pending" if s < 0.96 else "disabled")
            ent = org.set_entitlement(user.storage_key, lic[0], lic[1], lic[2], status=status, audit=False)
            ent.date_created = created
            if status == "pending" or a > 0.93:
                ent.last_accessed = NEVER
            elif a < 0.65:  # recent (within 30 days of the anchor)
                ent.last_accessed = self.anchor - timedelta(seconds=rng.random() * 30 * 86400)
            elif a < 0.80:
                ent.last_accessed = self.anchor - timedelta(days=30 + rng.random() * 60)
            else:  # stale: more than 90 days ago, after creation
                ent.last_accessed = _between(rng, created, stale)
            if ent.last_accessed != NEVER and ent.last_accessed < created:
                ent.last_accessed = created

    # ---- history -----------------------------------------------------------------------
    def make_history(self) -> None:
        from .mutations import apply_ops, random_ops

        org, rng, spec = self.org, self.rng, self.spec
        org.auditing_enabled = True
        n = spec.audit_events
        span = (self.anchor - timedelta(hours=1) - self.history_start).total_seconds()
        # Activity grows towards the present a little; sorted so the clock only moves forward.
        offsets = sorted(span * rng.random() ** 0.8 for _ in range(n))
        ops = random_ops(org, rng, n)
        for off, op in zip(offsets, ops, strict=True):
            op["at"] = self.history_start + timedelta(seconds=off)
        self.clock.set(self.history_start)
        self.results = apply_ops(org, ops, rng)
        # Scripted removals can leave someone in no group; an admin puts them back (audited), so
        # every user keeps at least one direct membership.
        self.clock.set(self.anchor - timedelta(minutes=30))
        self.world.settle()  # Entra changes from the history are visible by now (delay: minutes)
        live = [p for p in org.project_order if p in org.projects]
        for d in list(org.user_order):
            if not org.up.get(d) and live:
                user = org.identities[d]
                target = org.projects[live[rng.randrange(len(live))]].role_groups["readers"]
                self.clock.advance(timedelta(seconds=7))
                org.add_membership(target, d, actor_key=org.owner_key)
                if user.storage_key not in org.entitlements and user.origin in ("aad", "msa"):
                    org.set_entitlement(user.storage_key, "stakeholder", actor_key=org.owner_key)
        # Let every Entra change made during the history propagate before handing the org over.
        self.clock.set(self.anchor)
        self.world.settle()


def generate(world: World, org_name: str, *, size: str = "small", seed: int = 0) -> OrgState:
    """Create organization `org_name` in `world` with a realistic, deterministic shape (see SIZES)."""
    try:
        spec = SIZES[size]
    except KeyError:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}") from None
    rng = random.Random(seed)
    with world.lock:
        original_clock = world.clock
        now = original_clock.now()
        anchor = datetime(now.year, now.month, now.day, tzinfo=UTC)
        clock = _ManualClock(anchor)
        world.clock = clock
        try:
            b = _Builder(world, org_name, spec, rng, clock, anchor)
            b.make_users()
            b.make_projects()
            b.make_service_identities()
            b.make_groups()
            b.make_memberships()
            b.make_entitlements()
            b.make_history()
        finally:
            world.clock = original_clock
        return b.org


def max_nesting_depth(org: OrgState) -> int:
    """Longest chain of direct edges from a user to a top group (for tests and the benchmark)."""
    depth: dict[str, int] = {}

    def up_depth(d: str) -> int:
        if d in depth:
            return depth[d]
        ups = org.up.get(d, ())
        depth[d] = 0 if not ups else 1 + max(up_depth(c) for c in ups)
        return depth[d]

    return max((up_depth(u) for u in org.user_order), default=0) if org.user_order else 0


__all__ = ["SIZES", "SizeSpec", "generate", "max_nesting_depth"]
