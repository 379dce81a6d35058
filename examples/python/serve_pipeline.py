"""A composed pipeline served over HTTP with mpiray.serve (Ray Serve's API): a FastAPI ingress
calls a tokenizer and a batched scorer through handles; the deployments live in this script.

    python examples/python/serve_pipeline.py                  # local workers
    scripts/mpirun -n 4 python examples/python/serve_pipeline.py
    SERVE_PORT=8000 python examples/python/serve_pipeline.py --forever

    curl -s -d '{"text": "a good good day"}' http://127.0.0.1:8000/sentiment/classify
    curl -s http://127.0.0.1:8000/sentiment/words/great     # path parameter
"""
import concurrent.futures
import json
import os
import sys
import time
import urllib.request

from fastapi import FastAPI
from pydantic import BaseModel

import mpiray as ray                 # was: import ray
from mpiray import serve             # was: from ray import serve

POSITIVE = {"good": 1.0, "great": 2.0, "happy": 1.5}
NEGATIVE = {"bad": -1.0, "awful": -2.0, "sad": -1.5}


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Tokenizer:
    def __call__(self, text):
        return [w.strip(".,!?").lower() for w in text.split()]


@serve.deployment(num_replicas=2, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=32)
class Scorer:
    def __init__(self, lexicon):
        self.lexicon = lexicon

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def __call__(self, token_lists):         # one call per batch of requests
        return [sum(self.lexicon.get(t, 0.0) for t in tokens) for tokens in token_lists]


class Text(BaseModel):
    text: str


class Verdict(BaseModel):
    label: str
    score: float
    tokens: int


api = FastAPI()


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Sentiment:
    def __init__(self, tokenizer, scorer):
        self.tokenizer, self.scorer = tokenizer, scorer

    @api.post("/classify", response_model=Verdict)
    async def classify(self, body: Text):
        tokens = self.tokenizer.remote(body.text)
        score = await self.scorer.remote(tokens)       # the pending tokens travel unresolved
        n = len(await tokens)
        return Verdict(label="positive" if score > 0 else "negative" if score < 0 else "neutral",
                       score=score, tokens=n)

    @api.get("/words/{word}")
    async def word(self, word: str):
        return {"word": word, "score": await self.scorer.remote([word])}


def call(port, path, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/sentiment{path}", data=data,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def main():
    ray.init()
    port = int(os.environ.get("SERVE_PORT") or 8000)
    serve.start(http_options={"port": port})
    lexicon = dict(POSITIVE, **NEGATIVE)
    serve.run(Sentiment.bind(Tokenizer.bind(), Scorer.bind(lexicon)), name="sentiment",
              route_prefix="/sentiment")
    texts = ["A good, good day!", "awful and sad", "nothing to say", "great"] * 8
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        verdicts = list(pool.map(lambda t: call(port, "/classify", {"text": t}), texts))
    took = time.perf_counter() - t0
    ok = [v["label"] for v in verdicts[:4]] == ["positive", "negative", "neutral", "positive"]
    ok = ok and verdicts[0] == {"label": "positive", "score": 2.0, "tokens": 4}
    ok = ok and call(port, "/words/great") == {"word": "great", "score": 2.0}
    print(f"{len(verdicts)} classifications over HTTP in {took:.2f}s; first: {verdicts[0]}")
    print(serve.status().applications["sentiment"].status)
    if "--forever" in sys.argv:
        print(f"serving on http://127.0.0.1:{port}/sentiment until Ctrl-C")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    serve.shutdown()
    if not ok:
        print("serve pipeline example FAILED")
        sys.exit(1)
    print("serve pipeline example OK")


if __name__ == "__main__":
    main()
