"""Trivial office tasks from templates, and paraphrases of any prompt.

Office tasks (email drafts, formatting, short summaries) are what most
enterprise traffic looks like; any model does them acceptably, so they carry
``weak_ok = strong_ok = True``. Paraphrases keep the meaning and change the
wording, the way two people ask the same thing; they are deterministic given
the ``random.Random`` passed in.
"""

from __future__ import annotations

import random

NAMES = ["Dana", "Priya", "Marco", "Lena", "Tom", "Aisha", "Kenji", "Sofia", "Omar", "Grace", "Ivan", "Chloe"]
TOPICS = [
    "the quarterly budget review", "the new expense policy", "next week's offsite", "the vendor contract renewal",
    "the onboarding checklist", "the server maintenance window", "the client feedback survey",
    "the hiring plan", "the office move", "the security training", "the product launch timeline",
    "the holiday schedule", "the invoice backlog", "the customer escalation", "the team retrospective",
]  # fmt: skip
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
ITEMS = [
    "apples, pears, plums",
    "north, south, east, west",
    "draft, review, approve, publish",
    "name, email, phone",
    "red, green, blue",
    "alpha, beta, gamma, delta",
]
SNIPPETS = [
    "The meeting covered hiring, the travel budget and the launch date, which moves to May.",
    "Sales rose in the west region while support tickets fell after the new help center went live.",
    "The vendor agreed to a 5% discount if we sign for two years and pay quarterly.",
    "Three laptops need repair; IT will swap them on Thursday and restore backups the same day.",
    "Customers asked for dark mode, faster exports and a clearer invoice layout.",
]

TEMPLATES = [
    "Write a short email to {name} about {topic}.",
    "Draft a polite reminder to {name} that {topic} is due on {day}.",
    "Write a two-line thank-you note to {name} for help with {topic}.",
    "Summarize in one sentence: {snippet}",
    "Turn this list into a bulleted list: {items}",
    "Rewrite more formally: can we push {topic} to {day}?",
    "Give a subject line for an email about {topic}.",
    "Convert to title case: {topic}",
]

_SWAPS = [
    ("Write", "Compose"), ("Draft", "Write"), ("short", "brief"), ("about", "regarding"),
    ("Summarize", "Sum up"), ("Give", "Suggest"), ("polite", "friendly"), ("Rewrite", "Rephrase"),
]  # fmt: skip
_WRAPPERS = [
    "Please help with this.\n{p}", "Quick question:\n{p}", "{p}\nThanks!", "Hi, could you do this for me?\n{p}",
    "{p}\nPlease answer briefly.", "I need help with the following.\n{p}",
]  # fmt: skip


def office_task(rng: random.Random) -> str:
    template = rng.choice(TEMPLATES)
    return template.format(
        name=rng.choice(NAMES), topic=rng.choice(TOPICS), day=rng.choice(DAYS),
        items=rng.choice(ITEMS), snippet=rng.choice(SNIPPETS),
    )  # fmt: skip


def paraphrase(text: str, rng: random.Random) -> str:
    """A same-meaning rewording: a word swap where one applies, then maybe a wrapper."""
    out = text
    swaps = [(a, b) for a, b in _SWAPS if a in out]
    if swaps:
        a, b = rng.choice(swaps)
        out = out.replace(a, b, 1)
    if not swaps or rng.random() < 0.5:
        out = rng.choice(_WRAPPERS).format(p=out)
    if out == text:  # cannot happen with the wrappers above; kept as a guarantee
        out = f"Please answer: {text}"
    return out
