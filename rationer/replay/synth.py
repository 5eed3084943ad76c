"""``rationer trace synth``: a realistic, seeded trace from the shared data.

New prompts come from the classifier's **held-out** split (the shipped
card's group split) of RouteLLM's MMLU and GSM8K tables, with their
weak/strong correctness labels; from AlpacaEval's open-ended chat prompts,
which no shipped artifact trains on (licence), labelled by the judge's
preference (an answer is good when the judge preferred it or tied); and
from templated office tasks (labelled correct for any model). So the router
is never scored on prompts it was trained on. Repeats of earlier prompts, exact or
paraphrased, arrive at ``repeat_rate``; which prompt is repeated follows
Zipf-distributed popularity. Arrivals follow a diurnal rate curve. Teams
differ in what they ask and in their budgets. Same seed, same bytes.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rationer.replay.office import office_task, paraphrase
from rationer.replay.trace import BudgetSpec, Header, TraceLine

# Reference frontier list price (nano-USD per million tokens), the ledger's
# seed, used only to size budgets relative to a team's expected spend.
REF_IN, REF_OUT = 2_500_000_000, 10_000_000_000


@dataclass(frozen=True)
class TeamSpec:
    name: str
    weight: float  # share of requests
    users: int
    office: float  # share of a team's new prompts that are office tasks
    gsm8k: float  # share of its labelled new prompts that are GSM8K (rest MMLU)
    project: str
    # Budget as a multiple of the team's estimated all-frontier spend: below
    # ~0.5 the team feels budget pressure during the replay.
    budget_factor: float
    chat: float = 0.0  # share of its new prompts that are open-ended chat (AlpacaEval)


# Office shares as before chat joined the trace; chat takes part of the
# exam-style (MMLU/GSM8K) share, most in research and legal.
TEAMS = (
    TeamSpec("support", 0.35, 3, 0.75, 0.1, "helpdesk", 2.0, chat=0.15),
    TeamSpec("research", 0.3, 2, 0.2, 0.1, "papers", 1.0, chat=0.3),
    TeamSpec("finance", 0.2, 2, 0.35, 0.7, "forecasts", 0.3, chat=0.1),
    TeamSpec("legal", 0.15, 2, 0.35, 0.0, "contracts", 0.6, chat=0.25),
)


@dataclass(frozen=True)
class SynthConfig:
    requests: int = 300
    seed: int = 7
    repeat_rate: float = 0.3  # share of requests that repeat an earlier prompt
    paraphrase_share: float = 0.5  # of repeats: reworded rather than verbatim
    zipf_s: float = 1.1  # popularity exponent
    sampled_share: float = 0.05  # temperature 0.7: never cached
    max_tokens: int = 8
    duration_s: float = 86_400.0
    org: str = "acme"


@dataclass
class _Prompt:
    group: str
    kind: str
    content: str
    weak_ok: bool
    strong_ok: bool
    popularity: float


def diurnal_rate(hour: float) -> float:
    """Relative arrival rate over a working day: quiet nights, two peaks."""
    return 0.08 + math.exp(-(((hour - 10.5) / 1.8) ** 2)) + 0.8 * math.exp(-(((hour - 15.0) / 2.0) ** 2))


def arrival_times(rng: random.Random, n: int, duration_s: float) -> list[float]:
    """``n`` sorted arrivals over ``duration_s`` (one simulated day, scaled) by inverse CDF."""
    bins = 1440
    cum, total = [], 0.0
    for b in range(bins):
        total += diurnal_rate(24.0 * (b + 0.5) / bins)
        cum.append(total)
    out = []
    for _ in range(n):
        b = bisect.bisect_left(cum, rng.random() * total)
        out.append((min(b, bins - 1) + rng.random()) * duration_s / bins)
    return sorted(out)


Pools = tuple[list[_Prompt], list[_Prompt], list[_Prompt]]
POOL_DATASETS = ("mmlu", "gsm8k", "alpaca_eval")


def load_pools(data_dir: Path | None) -> Pools:
    """(MMLU, GSM8K, AlpacaEval chat) prompts from the test part of the shipped
    artifact's split: rows no shipped model was trained or selected on."""
    from rationer.classifier.artifact import load_card
    from rationer.classifier.data import resolve_data_dir
    from rationer.classifier.sources import load_all
    from rationer.classifier.split2 import GroupSplit

    frame = load_all(resolve_data_dir(data_dir))
    split = GroupSplit.from_dict(load_card()["split"])
    test = frame[(split.assign(frame) == "test").to_numpy() & frame["dataset"].isin(POOL_DATASETS).to_numpy()]
    pools: dict[str, list[_Prompt]] = {ds: [] for ds in POOL_DATASETS}
    for i, row in enumerate(test.itertuples(index=False)):
        content = f"{row.prompt}\nGive the final number." if row.dataset == "gsm8k" else row.prompt
        group = f"{row.dataset}:{row.subject}:{i}"
        kind = "chat" if row.dataset == "alpaca_eval" else row.dataset
        pools[row.dataset].append(_Prompt(group, kind, content, bool(row.weak), bool(row.strong), 0.0))
    return pools["mmlu"], pools["gsm8k"], pools["alpaca_eval"]


def _new_prompt(rng: random.Random, team: TeamSpec, pools: Pools, used: set[str]) -> _Prompt:
    draw = rng.random()
    if draw < team.office:
        text = office_task(rng)
        # Named by content: two draws of the same template and slots are one prompt.
        return _Prompt(f"office:{hashlib.sha256(text.encode()).hexdigest()[:12]}", "office", text, True, True, 0.0)
    if draw < team.office + team.chat and pools[2]:
        pool = pools[2]
    else:
        pool = pools[1] if rng.random() < team.gsm8k else pools[0]
    while True:
        p = pool[rng.randrange(len(pool))]
        if p.group not in used:
            return _Prompt(p.group, p.kind, p.content, p.weak_ok, p.strong_ok, 0.0)


def synthesize(cfg: SynthConfig, pools: Pools) -> tuple[Header, list[TraceLine]]:
    rng = random.Random(cfg.seed)
    times = arrival_times(rng, cfg.requests, cfg.duration_s)
    issued: list[_Prompt] = []
    weights: list[float] = []
    used: set[str] = set()
    lines: list[TraceLine] = []
    for i, ts in enumerate(times):
        team = rng.choices(TEAMS, weights=[t.weight for t in TEAMS])[0]
        user = f"{team.name}{rng.randrange(team.users) + 1}@{cfg.org}.example"
        if issued and rng.random() < cfg.repeat_rate:
            p = rng.choices(issued, weights=weights)[0]
            variant = "paraphrase" if rng.random() < cfg.paraphrase_share else "exact"
            content = paraphrase(p.content, rng) if variant == "paraphrase" else p.content
        else:
            p = _new_prompt(rng, team, pools, used)
            variant, content = ("exact" if p.group in used else "original"), p.content
            if variant == "original":
                # Zipf popularity: a random rank r out of the trace size, weight r^-s.
                p.popularity = (rng.randrange(cfg.requests) + 1) ** -cfg.zipf_s
                issued.append(p)
                weights.append(p.popularity)
                used.add(p.group)
        temperature = 0.7 if rng.random() < cfg.sampled_share else 0.0
        labels = {"weak_ok": p.weak_ok, "strong_ok": p.strong_ok, "group": p.group, "kind": p.kind,
                  "variant": variant}  # fmt: skip
        lines.append(TraceLine(
            id=f"r{i:06d}", ts=ts, org=cfg.org, team=team.name, user=user, project=team.project,
            messages=(("user", content),), max_tokens=cfg.max_tokens, temperature=temperature, labels=labels,
        ))  # fmt: skip
    header = Header(name=f"synth-{cfg.requests}-seed{cfg.seed}", seed=cfg.seed, duration_s=cfg.duration_s,
                    budgets=_budgets(cfg, lines),
                    generator={**asdict(cfg), "teams": [asdict(t) for t in TEAMS]})  # fmt: skip
    return header, lines


def estimated_frontier_nano(line: TraceLine) -> int:
    """All-frontier cost of a line at the reference price (~4 characters a token)."""
    prompt = math.ceil(line.prompt_chars / 4) + 8  # chat template overhead
    return math.ceil((prompt * REF_IN + line.max_tokens * REF_OUT) / 1_000_000)


def _budgets(cfg: SynthConfig, lines: list[TraceLine]) -> tuple[BudgetSpec, ...]:
    spend: dict[str, int] = {}
    for ln in lines:
        spend[ln.team] = spend.get(ln.team, 0) + estimated_frontier_nano(ln)
    out = []
    for t in TEAMS:
        usd = round(max(spend.get(t.name, 0) * t.budget_factor / 1e9, 1e-6), 6)
        out.append(BudgetSpec(org=cfg.org, team=t.name, usd=usd, period="lifetime", soft=0.8))
    return tuple(out)


def summary(lines: list[TraceLine]) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    variants: dict[str, int] = {}
    for ln in lines:
        kinds[str(ln.labels.get("kind"))] = kinds.get(str(ln.labels.get("kind")), 0) + 1
        variants[str(ln.labels.get("variant"))] = variants.get(str(ln.labels.get("variant")), 0) + 1
    return {"requests": len(lines), "kinds": kinds, "variants": variants,
            "groups": len({ln.group for ln in lines})}  # fmt: skip
