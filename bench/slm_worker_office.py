"""Office-task quality check of the worker's models (issue 18, item 9).

``python -m bench.slm_worker_office [--config worker.toml] [--threads N]``
loads every model of the worker's settings (the defaults without
``--config``) through the worker's own loader (so prompt
formats, BOS handling and stop sequences are the ones served) and asks five
office prompts with greedy decoding. Each answer is judged by a stated,
mechanical check (``CHECKS``); the report also gives each answer's
finish_reason, so one can see how often the default ``max_tokens`` cuts an
answer off, and the decode speed. Results are recorded in docs/slm_worker.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rationer.platform.settings import load_settings
from services.slm_worker.engine import GenerationOutcome
from services.slm_worker.prompts import Message
from services.slm_worker.settings import ModelEntry, WorkerSettings
from services.slm_worker.wiring import build_deps
from services.slm_worker.worker import Params

PARAGRAPH = (
    "Acme Corp reported revenue of 4.2 million euros in the third quarter, up 12 percent from a year earlier. "
    "The growth came mainly from the new logistics software, which now has 310 business customers. "
    "Costs rose by 5 percent because the company hired 40 engineers in Lyon. "
    "The CEO, Marta Olsen, expects a similar result in the fourth quarter."
)

PROMPTS = {
    "email": "Write a short, polite email to my colleague Tom Berger asking him to send the Q3 sales report "
    "by Friday. Sign it as Anna.",
    "regex": "Give only a Python regular expression (no explanation) that matches dates in the format "
    "YYYY-MM-DD, like 2024-03-15.",
    "summary": "Summarize this paragraph in exactly 3 sentences:\n\n" + PARAGRAPH,
    "json": "Extract the person's name, city and email from this text and answer only with JSON with the keys "
    '"name", "city", "email": "Hi, I am Lena Fischer from Hamburg, you can reach me at lena.fischer@example.com."',
    "rewrite": "Rewrite this sentence to be more polite and professional: "
    '"Send me the invoice now, you are late again."',
}


def check_email(text: str) -> bool:
    """Names both people and the deadline; no template placeholder like [Name]."""
    return "[" not in text and all(word in text for word in ("Tom", "Friday", "Anna"))


def _regex_candidate(text: str) -> str:
    fenced = re.search(r"`+(?:python|regex)?\s*(.+?)`+", text, re.S)
    line = fenced.group(1) if fenced else (text.strip().splitlines() or [""])[0]
    line = line.strip()
    quoted = re.fullmatch(r"r?(['\"])(.*)\1", line)
    return quoted.group(2) if quoted else line


def check_regex(text: str) -> bool:
    """Compiles; finds 2024-03-15 and 1999-12-31; rejects 15/03/2024 and 'hello'."""
    try:
        rx = re.compile(_regex_candidate(text))
    except re.error:
        return False
    return bool(rx.search("2024-03-15") and rx.search("1999-12-31")) and not rx.search("15/03/2024 hello")


def check_summary(text: str) -> bool:
    """2-4 sentences, at least 3 of the 4 key figures, and no number the paragraph lacks."""
    numbers = set(re.findall(r"\d+(?:\.\d+)?", text))
    sentences = len(re.findall(r"[.!?](?:\s|$)", text))
    facts = sum(f in text for f in ("4.2", "12", "310", "40"))
    return facts >= 3 and numbers <= {"4.2", "12", "310", "40", "5", "3"} and 2 <= sentences <= 4


def check_json(text: str) -> bool:
    """A JSON object with exactly the three asked values."""
    found = re.search(r"\{.*?\}", text, re.S)
    try:
        data = json.loads(found.group(0)) if found else None
    except ValueError:
        return False
    want = {"name": "Lena Fischer", "city": "Hamburg", "email": "lena.fischer@example.com"}
    return isinstance(data, dict) and all(data.get(k) == v for k, v in want.items())


def check_rewrite(text: str) -> bool:
    """Short, still about the invoice, asks politely, and neither refuses nor apologizes."""
    low = text.lower()
    return (
        0 < len(text.strip()) < 400
        and "invoice" in low
        and re.search(r"please|could you|would you|kindly", low) is not None
        and re.search(r"sorry|unable|cannot|can't", low) is None
    )


CHECKS: dict[str, Callable[[str], bool]] = {
    "email": check_email,
    "regex": check_regex,
    "summary": check_summary,
    "json": check_json,
    "rewrite": check_rewrite,
}


@dataclass
class Answer:
    model: str
    task: str
    passed: bool
    finish_reason: str
    completion_tokens: int
    ttft_ms: float
    decode_ms: float
    text: str


async def run(entries: list[ModelEntry], max_tokens: int) -> list[Answer]:
    worker = await build_deps(WorkerSettings(models=entries))
    answers: list[Answer] = []
    try:
        for entry in entries:
            for task, prompt in PROMPTS.items():
                parts: list[str] = []
                outcome: GenerationOutcome | None = None
                params = Params(max_tokens=max_tokens, temperature=0.0, seed=0)
                async for item in worker.generate(entry.name, [Message("user", prompt)], params):
                    if isinstance(item, GenerationOutcome):
                        outcome = item
                    else:
                        parts.append(item.text)
                assert outcome is not None  # the worker always ends with one
                text = "".join(parts)
                answers.append(Answer(entry.name, task, CHECKS[task](text), outcome.finish_reason,
                                      outcome.completion_tokens, outcome.time_to_first_token_ms,
                                      outcome.decode_ms, text))
    finally:
        worker.close()
    return answers


def summarize(answers: list[Answer]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for model in dict.fromkeys(a.model for a in answers):
        mine = [a for a in answers if a.model == model]
        decode_s = sum(a.decode_ms for a in mine) / 1000
        rows.append({
            "model": model,
            "passed": f"{sum(a.passed for a in mine)}/{len(mine)}",
            "failed": [a.task for a in mine if not a.passed],
            "ended_at_length": f"{sum(a.finish_reason == 'length' for a in mine)}/{len(mine)}",
            "decode_tok_s": round(sum(a.completion_tokens for a in mine) / decode_s, 1) if decode_s else None,
            "mean_ttft_ms": round(sum(a.ttft_ms for a in mine) / len(mine)),
        })  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=None, help="a TOML file with a [worker] section")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads per model")
    parser.add_argument("--max-tokens", type=int, default=0, help="0 = each model's default_max_tokens")
    parser.add_argument("--answers", action="store_true", help="also print every answer")
    args = parser.parse_args()
    models = load_settings(WorkerSettings, "worker", toml_path=args.config).models
    entries = [m.model_copy(update={"n_threads": args.threads, "slots": 1, "batched": False}) for m in models]
    answers = asyncio.run(run(entries, args.max_tokens))
    if args.answers:
        for a in answers:
            print(json.dumps({"model": a.model, "task": a.task, "pass": a.passed, "finish": a.finish_reason,
                              "text": a.text}))
    for row in summarize(answers):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
