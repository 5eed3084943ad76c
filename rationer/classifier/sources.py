"""The diverse router data in ``routing/``: MMLU-Pro, AlpacaEval chat, RouterBench.

Training-only (pandas). Each loader returns rows shaped like
:func:`rationer.classifier.data.load_frame`'s (``prompt, dataset, subject,
weak, strong``) plus ``shippable`` (may a shipped artifact learn from it?)
and one ``m:<model>`` column per model in the source's correctness table,
which the matrix-factorisation candidate learns from.

Licences decide ``shippable``: AlpacaEval is CC BY-NC and the RouterBench
slice carries no licence, so both are evaluation-only.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

PRO_STRONG = "gemini_1_5_pro"
PRO_WEAK = "mixtral_8x7b"
PRO_MODELS = ("gemini_1_5_pro", "llama_3_1_70b", "mixtral_8x7b", "llama_3_1_8b")
RB_STRONG = "gpt-4-1106-preview"
RB_WEAK = "mistralai/mixtral-8x7b-chat"
RB_FILES = {"arc": "routerbench_arc_challenge.jsonl", "mbpp": "routerbench_mbpp.jsonl",
            "winogrande": "routerbench_winogrande.jsonl"}  # fmt: skip
RB_META = frozenset({"split", "", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"})
ALPACA_FILE = "alpaca_eval_mixtral_vs_gpt4turbo.jsonl"
# Datasets a shipped artifact may not learn from (see the routing README).
EVAL_ONLY = frozenset({"alpaca_eval", "arc", "mbpp", "winogrande"})


def _read_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def mmlu_pro_prompt(question: str, options: list[str]) -> str:
    """The MMLU layout RouteLLM's tables use: question, lettered options, ``Answer:``."""
    letters = "ABCDEFGHIJ"
    lines = [question.strip(), *(f"{letters[i]}. {opt}" for i, opt in enumerate(options))]
    return "\n".join(lines) + "\nAnswer:"


def last_shot(prompt: str) -> str:
    """The question a few-shot RouterBench prompt asks: its last blank-line block.

    The router embeds what a user sends, and users do not send five solved
    examples first; MiniLM would also truncate the real question away.
    """
    blocks = [b for b in prompt.split("\n\n") if b.strip()]
    if not blocks:
        return prompt
    tail = blocks[-1]
    # Winogrande puts its instruction in the block before the question.
    if len(blocks) > 1 and len(tail) < 40:
        tail = blocks[-2] + "\n\n" + tail
    return tail.strip()


def load_mmlu_pro(routing_dir: Path) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r in _read_jsonl(routing_dir / "mmlu_pro_correctness.jsonl"):
        src = str(r["src"])
        rows.append(
            {
                "prompt": mmlu_pro_prompt(str(r["question"]), list(r["options"])),  # type: ignore[call-overload]
                "dataset": "mmlu_pro",
                "subject": str(r["category"]),
                # Rewritten MMLU questions follow their MMLU subject in a split.
                "mmlu_subject": src[len("ori_mmlu-") :] if src.startswith("ori_mmlu-") else "",
                "weak": bool(r[PRO_WEAK]),
                "strong": bool(r[PRO_STRONG]),
                **{f"m:{m}": float(bool(r[m])) for m in PRO_MODELS},
            }
        )
    return pd.DataFrame(rows)


def load_alpaca(routing_dir: Path) -> pd.DataFrame:
    """Chat prompts; an answer is good when the judge preferred it or tied (preference 1.5)."""
    import pandas as pd

    rows = []
    for r in _read_jsonl(routing_dir / ALPACA_FILE):
        pref = float(r["preference"])  # type: ignore[arg-type]
        rows.append(
            {
                "prompt": str(r["prompt"]),
                "dataset": "alpaca_eval",
                "subject": str(r["source"]),
                "mmlu_subject": "",
                "weak": pref >= 1.5,
                "strong": pref <= 1.5,
            }
        )
    return pd.DataFrame(rows)


def load_routerbench(routing_dir: Path) -> pd.DataFrame:
    import pandas as pd

    frames = []
    for name, fname in RB_FILES.items():
        rows = []
        for r in _read_jsonl(routing_dir / fname):
            parts = ast.literal_eval(str(r["prompt"]))
            text = parts[0] if isinstance(parts, list) and parts else str(r["prompt"])
            models = [k for k in r if k not in RB_META and "|" not in k]
            if _score(r[RB_WEAK]) is None or _score(r[RB_STRONG]) is None:
                continue
            rows.append(
                {
                    "prompt": last_shot(str(text)),
                    "dataset": name,
                    "subject": name,
                    "mmlu_subject": "",
                    "weak": (_score(r[RB_WEAK]) or 0.0) >= 0.5,
                    "strong": (_score(r[RB_STRONG]) or 0.0) >= 0.5,
                    **{f"m:{m}": _score(r[m]) for m in models},
                }
            )
        frames.append(pd.DataFrame(rows))
    return pd.concat(frames, ignore_index=True)


def _score(v: object) -> float | None:
    """A 0/1 correctness cell; None where the source left it empty."""
    text = str(v).strip()
    return float(text) if text else None


def load_routing(routing_dir: Path) -> pd.DataFrame:
    """Every ``routing/`` file present, in one frame (missing files are skipped)."""
    import pandas as pd

    frames = []
    if (routing_dir / "mmlu_pro_correctness.jsonl").exists():
        frames.append(load_mmlu_pro(routing_dir))
    if (routing_dir / ALPACA_FILE).exists():
        frames.append(load_alpaca(routing_dir))
    if all((routing_dir / f).exists() for f in RB_FILES.values()):
        frames.append(load_routerbench(routing_dir))
    if not frames:
        return pd.DataFrame(columns=["prompt", "dataset", "subject", "mmlu_subject", "weak", "strong"])
    return pd.concat(frames, ignore_index=True)


def load_all(data_dir: Path) -> pd.DataFrame:
    """RouteLLM's MMLU/GSM8K tables plus every ``routing/`` file, deduplicated on ``prompt``."""
    import pandas as pd

    from rationer.classifier.data import load_frame

    base = load_frame(data_dir)
    base["mmlu_subject"] = base["subject"].where(base["dataset"] == "mmlu", "")
    full = pd.concat([base, load_routing(data_dir / "routing")], ignore_index=True)
    # First occurrence wins: RouteLLM rows come first, so a prompt shared with
    # a routing/ file keeps its MMLU subject (and so its side of the split).
    full = full.drop_duplicates(subset="prompt", keep="first").reset_index(drop=True)
    full["shippable"] = ~full["dataset"].isin(EVAL_ONLY)
    return full
